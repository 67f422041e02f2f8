locals {
  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
}

# Anything in the DLQ needs a person: read docs/operations.md, "DLQ runbook".
resource "aws_cloudwatch_metric_alarm" "dlq_messages" {
  alarm_name          = "${var.name}-dlq-has-messages"
  alarm_description   = "sqs-poller ${var.name}: messages are waiting in the DLQ (${aws_sqs_queue.dlq.name}). Runbook: docs/operations.md#dlq-runbook"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# Consumers are not keeping up, or not consuming at all (crash loop, bad deploy).
resource "aws_cloudwatch_metric_alarm" "oldest_message_age" {
  alarm_name          = "${var.name}-oldest-message-age"
  alarm_description   = "sqs-poller ${var.name}: the oldest message in ${aws_sqs_queue.main.name} is older than ${var.oldest_message_age_threshold} s. Runbook: docs/operations.md#reading-the-alarms"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_age_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# The daemon itself dead-lettered messages just now: the signal a canary watches.
resource "aws_cloudwatch_metric_alarm" "dead_lettered" {
  alarm_name          = "${var.name}-dead-lettered"
  alarm_description   = "sqs-poller ${var.name}: more than ${var.dead_lettered_threshold} messages dead-lettered in 5 minutes (log event message_dead_lettered). Rolls back an instance refresh. Runbook: docs/operations.md#dlq-runbook"
  namespace           = local.metrics_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.dead_lettered.metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.dead_lettered_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}
