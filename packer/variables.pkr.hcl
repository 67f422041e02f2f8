variable "region" {
  type        = string
  description = "Region the AMI is built in (copy it elsewhere with ami_regions)."
  default     = "ap-southeast-2"
}

variable "ami_regions" {
  type        = list(string)
  description = "Extra regions to copy the AMI to."
  default     = []
}

variable "architecture" {
  type        = string
  description = "x86_64 or arm64; pick instance_type to match."
  default     = "x86_64"
}

variable "kernel_flavour" {
  type        = string
  description = "Amazon Linux 2023 kernel flavour of the base image, as in its AMI name (kernel-6.1, kernel-6.12)."
  default     = "kernel-6.1"
}

variable "region_kms_key_ids" {
  type        = map(string)
  description = "Region -> KMS key for the copies in ami_regions when kms_key_id is set (a key is regional)."
  default     = {}
}

variable "instance_type" {
  type        = string
  description = "Build instance type."
  default     = "t3.small"
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the build instance (empty: the default VPC)."
  default     = ""
}

variable "kms_key_id" {
  type        = string
  description = "KMS key for the AMI's encrypted snapshot (empty: the account's EBS default key)."
  default     = ""
}

variable "root_volume_size" {
  type        = number
  description = "Root volume of the AMI in GiB; instances may ask for more, never less."
  default     = 8
}

variable "extra_requirements" {
  type        = string
  description = "Space-separated pip requirements installed next to the daemon, pinned (e.g. \"thumbnailer==2.4.1\"): the handler's own package."
  default     = ""
}

variable "pip_index_url" {
  type        = string
  description = "Package index for the virtualenv (a private mirror, for example)."
  default     = "https://pypi.org/simple"
}
