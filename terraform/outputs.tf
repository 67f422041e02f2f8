output "queues" {
  description = "Every queue by its daemon NAME: url and arn (producers send here; grant them sqs:SendMessage on arn and kms:GenerateDataKey on kms_key_arn), dlq_url and dlq_arn (for `sqs-poller dlq ... --queue NAME`), and the SQS names."
  value = {
    for key, q in local.queues : q.name => {
      url      = aws_sqs_queue.this[key].url
      arn      = aws_sqs_queue.this[key].arn
      name     = aws_sqs_queue.this[key].name
      dlq_url  = aws_sqs_queue.dlq[key].url
      dlq_arn  = aws_sqs_queue.dlq[key].arn
      dlq_name = aws_sqs_queue.dlq[key].name
    }
  }
}

output "queue_url" {
  description = "The one-queue form's work queue URL: producers send here (null with a queues map: see queues)."
  value       = local.one_queue_form ? aws_sqs_queue.this["default"].url : null
}

output "queue_arn" {
  description = "The one-queue form's work queue ARN (grant producers sqs:SendMessage on it, and kms:GenerateDataKey on kms_key_arn); null with a queues map."
  value       = local.one_queue_form ? aws_sqs_queue.this["default"].arn : null
}

output "dlq_url" {
  description = "The one-queue form's dead-letter queue URL, for `sqs-poller dlq ...` (null with a queues map)."
  value       = local.one_queue_form ? aws_sqs_queue.dlq["default"].url : null
}

output "dlq_arn" {
  description = "The one-queue form's dead-letter queue ARN (null with a queues map)."
  value       = local.one_queue_form ? aws_sqs_queue.dlq["default"].arn : null
}

output "kms_key_arn" {
  description = "KMS key encrypting the queues and log groups."
  value       = local.kms_key_arn
}

output "autoscaling_group_name" {
  description = "Auto Scaling group of the workers."
  value       = aws_autoscaling_group.this.name
}

output "launch_template_id" {
  description = "Launch template of the workers."
  value       = aws_launch_template.this.id
}

output "launch_template_version" {
  description = "Newest launch template version: what `sqs-poller deploy start` rolls out (the group stays saved on the running one until the rollout succeeds)."
  value       = aws_launch_template.this.latest_version
}

output "release" {
  description = "Release label of the newest launch template version: the Version dimension of the daemon's per-version metrics."
  value       = local.release
}

output "rollout" {
  description = "Settings for `sqs-poller deploy start --settings` (terraform output -json rollout > rollout.json)."
  value = {
    group   = aws_autoscaling_group.this.name
    version = tostring(aws_launch_template.this.latest_version)
    alarms = concat(
      [aws_cloudwatch_metric_alarm.release_dead_lettered.alarm_name, aws_cloudwatch_metric_alarm.release_handler_errors.alarm_name],
      [for alarm in values(aws_cloudwatch_metric_alarm.release_queue_dead_lettered) : alarm.alarm_name],
    )
    checkpoints            = var.canary_checkpoints
    checkpoint_delay       = var.canary_checkpoint_delay
    min_healthy_percentage = var.min_healthy_percentage
    max_healthy_percentage = var.max_healthy_percentage
    instance_warmup        = var.instance_warmup_seconds
  }
}

output "lifecycle_hook_name" {
  description = "Termination lifecycle hook the daemon completes after draining."
  value       = aws_autoscaling_lifecycle_hook.drain.name
}

output "instance_role_arn" {
  description = "IAM role of the workers (attach extra policies the handler needs here)."
  value       = var.create_iam_role ? aws_iam_role.instance[0].arn : data.aws_iam_role.existing[0].arn
}

output "instance_role_name" {
  description = "Name of the workers' IAM role."
  value       = local.role_name
}

output "security_group_id" {
  description = "Security group the module created for the workers (HTTPS egress only); null with create_security_group = false."
  value       = var.create_security_group ? aws_security_group.instance[0].id : null
}

output "log_group_name" {
  description = "CloudWatch log group with the daemon's JSON log lines."
  value       = aws_cloudwatch_log_group.daemon.name
}

output "metrics_namespace" {
  description = "CloudWatch namespace of the daemon's metrics: the per-release and scaling EMF figures (docs/operations.md), the dead-lettered count, the Prometheus scrape."
  value       = local.metrics_namespace
}

output "ssm_parameter_path" {
  description = "SSM path the handler may read."
  value       = local.ssm_parameter_path
}

output "alarm_names" {
  description = "CloudWatch alarms, the per-queue ones by queue NAME; release_dead_lettered, release_queue_dead_lettered and release_handler_errors roll a rollout back."
  value = {
    dlq_messages                = { for key, q in local.queues : q.name => aws_cloudwatch_metric_alarm.dlq_messages[key].alarm_name }
    oldest_message_age          = { for key, q in local.queues : q.name => aws_cloudwatch_metric_alarm.oldest_message_age[key].alarm_name }
    dead_lettered               = aws_cloudwatch_metric_alarm.dead_lettered.alarm_name
    release_dead_lettered       = aws_cloudwatch_metric_alarm.release_dead_lettered.alarm_name
    release_queue_dead_lettered = { for key, alarm in aws_cloudwatch_metric_alarm.release_queue_dead_lettered : local.queues[key].name => alarm.alarm_name }
    release_handler_errors      = aws_cloudwatch_metric_alarm.release_handler_errors.alarm_name
  }
}

output "caller_kms_key_policy_statement" {
  description = "With kms_key_arn: the key policy statement (JSON) that lets CloudWatch Logs encrypt this deployment's log groups. Add it to that key's policy before the first apply, or creating the log groups fails."
  value       = data.aws_iam_policy_document.logs_key_use.json
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "daemon_config" {
  description = "The TOML user data writes to /etc/sqs-poller/<name>.toml (for review; holds no secrets)."
  value       = local.daemon_config
}

output "control_parameter" {
  description = "The SSM parameter `sqs-poller pause --fleet` writes and every instance's daemon reads ([control] ssm_parameter). Created by the first --fleet command (needs ssm:PutParameter); absent, nothing is paused."
  value       = local.control_parameter
}
