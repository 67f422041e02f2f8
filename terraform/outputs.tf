output "queue_url" {
  description = "URL of the work queue: producers send here."
  value       = aws_sqs_queue.main.url
}

output "queue_arn" {
  description = "ARN of the work queue (grant producers sqs:SendMessage on it, and kms:GenerateDataKey on kms_key_arn)."
  value       = aws_sqs_queue.main.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue, for `sqs-poller dlq ...`."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
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
    group                  = aws_autoscaling_group.this.name
    version                = tostring(aws_launch_template.this.latest_version)
    alarms                 = [aws_cloudwatch_metric_alarm.release_dead_lettered.alarm_name, aws_cloudwatch_metric_alarm.release_handler_errors.alarm_name]
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
  description = "CloudWatch namespace of the daemon's metrics (dead-lettered count, Prometheus scrape)."
  value       = local.metrics_namespace
}

output "ssm_parameter_path" {
  description = "SSM path the handler may read."
  value       = local.ssm_parameter_path
}

output "alarm_names" {
  description = "CloudWatch alarms; release_dead_lettered and release_handler_errors roll a rollout back."
  value = {
    dlq_messages           = aws_cloudwatch_metric_alarm.dlq_messages.alarm_name
    oldest_message_age     = aws_cloudwatch_metric_alarm.oldest_message_age.alarm_name
    dead_lettered          = aws_cloudwatch_metric_alarm.dead_lettered.alarm_name
    release_dead_lettered  = aws_cloudwatch_metric_alarm.release_dead_lettered.alarm_name
    release_handler_errors = aws_cloudwatch_metric_alarm.release_handler_errors.alarm_name
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
