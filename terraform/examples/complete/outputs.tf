output "queues" {
  description = "Each queue's URL (send jobs here) and DLQ URL (for `sqs-poller dlq stats|peek|replay --queue NAME`)."
  value       = { for name, queue in module.media.queues : name => { url = queue.url, dlq_url = queue.dlq_url } }
}

output "autoscaling_group_name" {
  description = "Workers' Auto Scaling group."
  value       = module.media.autoscaling_group_name
}

output "dashboard_name" {
  description = "CloudWatch dashboard."
  value       = module.media.dashboard_name
}

output "rollout" {
  description = "Settings for `sqs-poller deploy start --settings` after each apply."
  value       = module.media.rollout
}
