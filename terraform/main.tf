data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # id is the region's name in provider 5 and 6 (6 deprecates name).
  region = data.aws_region.current.id

  kms_key_arn        = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn
  ssm_parameter_path = var.ssm_parameter_path != null ? var.ssm_parameter_path : "/sqs-poller/${var.name}"
  # `sqs-poller pause --fleet` writes it, every daemon reads it ([control] ssm_parameter); under
  # the path, so the role's ReadHandlerParameters statement already covers it.
  control_parameter = "${local.ssm_parameter_path}/control"

  # Names the AMI's CloudWatch agent configuration is pointed at by user data.
  log_group_name         = "/sqs-poller/${var.name}"
  metrics_log_group_name = "/sqs-poller/${var.name}/prometheus"
  metrics_namespace      = "SQSPoller/${var.name}"

  asg_name = var.name
  # Built from the name, not aws_autoscaling_group.this.arn: the instance policy must
  # exist before the group launches its first instances.
  asg_arn             = "arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"
  lifecycle_hook_name = "${var.name}-drain"
  # The daemon records a heartbeat three times per timeout, so one lost call is harmless.
  lifecycle_heartbeat_seconds = floor(var.lifecycle_heartbeat_timeout / 3)

  # systemd's TimeoutStopSec: the drain (grace + the longest long poll) plus time to settle
  # the last deletes and complete the lifecycle action.
  stop_timeout_seconds  = var.shutdown_grace + local.longest_wait_seconds + local.settle_margin_seconds
  settle_margin_seconds = 40

  # Spot above the on-demand base: the daemon also drains on Spot notices.
  spot_enabled = var.on_demand_percentage_above_base_capacity < 100

  tags = merge(var.tags, { "sqs-poller:deployment" = var.name })
  resource_tags = {
    for kind in local.taggable : kind => merge(local.tags, lookup(var.resource_tags, kind, {}))
  }
  taggable = [
    "queue", "autoscaling_group", "launch_template", "instance", "volume", "iam_role",
    "security_group", "log_group", "alarm", "kms_key", "bucket",
  ]

  role_name = var.create_iam_role ? aws_iam_role.instance[0].name : var.iam_role_name
  security_group_ids = concat(
    var.create_security_group ? [aws_security_group.instance[0].id] : [],
    var.security_group_ids,
  )
}
