variable "region" {
  description = "AWS region."
  type        = string
  default     = "ap-southeast-2"
}

variable "ami_id" {
  description = "AMI from `packer build packer/` (its ID is in packer/manifest.json)."
  type        = string
}

variable "vpc_id" {
  description = "VPC with private subnets that reach SQS, SSM and CloudWatch (NAT or VPC endpoints)."
  type        = string
}

variable "private_subnet_ids" {
  description = "One private subnet per Availability Zone."
  type        = list(string)
}
