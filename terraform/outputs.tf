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
  description = "Launch template version the group is pinned to."
  value       = aws_launch_template.this.latest_version
}

output "lifecycle_hook_name" {
  description = "Termination lifecycle hook the daemon completes after draining."
  value       = aws_autoscaling_lifecycle_hook.drain.name
}

output "instance_role_arn" {
  description = "IAM role of the workers (attach extra policies the handler needs here)."
  value       = aws_iam_role.instance.arn
}

output "instance_role_name" {
  description = "Name of the workers' IAM role."
  value       = aws_iam_role.instance.name
}

output "security_group_id" {
  description = "Security group of the workers (HTTPS egress only)."
  value       = aws_security_group.instance.id
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
  description = "CloudWatch alarms; dead_lettered and oldest_message_age also roll back an instance refresh."
  value = {
    dlq_messages       = aws_cloudwatch_metric_alarm.dlq_messages.alarm_name
    oldest_message_age = aws_cloudwatch_metric_alarm.oldest_message_age.alarm_name
    dead_lettered      = aws_cloudwatch_metric_alarm.dead_lettered.alarm_name
  }
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "daemon_config" {
  description = "The TOML user data writes to /etc/sqs-poller/<name>.toml (for review; holds no secrets)."
  value       = local.daemon_config
}
