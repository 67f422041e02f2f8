data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  queue_suffix = var.fifo_queue ? ".fifo" : ""
  queue_name   = "${var.name}${local.queue_suffix}"
  dlq_name     = "${var.name}-dlq${local.queue_suffix}"

  kms_key_arn        = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn
  ssm_parameter_path = var.ssm_parameter_path != null ? var.ssm_parameter_path : "/sqs-poller/${var.name}"

  # Names the AMI's CloudWatch agent configuration is pointed at by user data.
  log_group_name         = "/sqs-poller/${var.name}"
  metrics_log_group_name = "/sqs-poller/${var.name}/prometheus"
  metrics_namespace      = "SQSPoller/${var.name}"

  asg_name            = var.name
  lifecycle_hook_name = "${var.name}-drain"
  # The daemon records a heartbeat three times per timeout, so one lost call is harmless.
  lifecycle_heartbeat_seconds = floor(var.lifecycle_heartbeat_timeout / 3)

  tags = merge(var.tags, { "sqs-poller:deployment" = var.name })
}
