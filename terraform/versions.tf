terraform {
  # 1.5: check blocks and preconditions on resources are both available.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.46: instance refresh alarm_specification. The module uses only arguments and
      # attributes that 5.46 and 6.x both have (`make test` checks both schemas).
      version = ">= 5.46.0, < 7.0.0"
    }
  }
}
