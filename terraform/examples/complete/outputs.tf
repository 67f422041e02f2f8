output "queue_url" {
  description = "Send thumbnail jobs here."
  value       = module.thumbnails.queue_url
}

output "dlq_url" {
  description = "Dead-letter queue, for `sqs-poller dlq stats|peek|replay`."
  value       = module.thumbnails.dlq_url
}

output "autoscaling_group_name" {
  description = "Workers' Auto Scaling group."
  value       = module.thumbnails.autoscaling_group_name
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = module.thumbnails.dashboard_name
}

output "rollout" {
  description = "Settings for `sqs-poller deploy start --settings` after each apply."
  value       = module.thumbnails.rollout
}
