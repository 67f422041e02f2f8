terraform {
  # 1.5: check blocks and preconditions on resources are both available.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.46: instance_refresh alarm_specification; 6.0 renames aws_region.name.
      version = ">= 5.46.0, < 6.0.0"
    }
  }
}
