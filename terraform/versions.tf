terraform {
  # 1.5: check blocks and preconditions on resources are both available.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.85: `period` on the scaling policy's metric_stat (its 10-s periods; 5.46 brought
      # instance refresh alarm_specification). The module uses only arguments and attributes
      # that 5.85 and 6.x both have (`make test` checks both schemas).
      version = ">= 5.85.0, < 7.0.0"
    }
  }
}
