locals {
  alarm_actions = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
}

# Anything in a DLQ needs a person: read docs/operations.md, "DLQ runbook". One alarm a queue.
resource "aws_cloudwatch_metric_alarm" "dlq_messages" {
  for_each = local.queues

  alarm_name          = "${each.value.alarm_prefix}-dlq-has-messages"
  alarm_description   = "sqs-poller ${var.name}: more than ${each.value.alarms.dlq_depth} messages are waiting in the DLQ of queue ${each.value.name} (${aws_sqs_queue.dlq[each.key].name}). Runbook: docs/operations.md#dlq-runbook"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq[each.key].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.alarms.dlq_depth
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.resource_tags["alarm"]
}

# A queue's consumers are not keeping up, or not consuming at all (crash loop, bad deploy,
# a breaker held open by its downstream).
resource "aws_cloudwatch_metric_alarm" "oldest_message_age" {
  for_each = local.queues

  alarm_name          = "${each.value.alarm_prefix}-oldest-message-age"
  alarm_description   = "sqs-poller ${var.name}: the oldest message in queue ${each.value.name} (${aws_sqs_queue.this[each.key].name}) is older than ${each.value.alarms.oldest_message_age} s. Runbook: docs/operations.md#reading-the-alarms"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.this[each.key].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.alarms.oldest_message_age
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.resource_tags["alarm"]
}

# The daemon itself dead-lettered messages just now, whichever version did it (pages; the
# rollout watches the per-version alarms below instead).
resource "aws_cloudwatch_metric_alarm" "dead_lettered" {
  alarm_name          = "${var.name}-dead-lettered"
  alarm_description   = "sqs-poller ${var.name}: more than ${var.dead_lettered_threshold} messages dead-lettered in 5 minutes (log event message_dead_lettered), all versions together. Runbook: docs/operations.md#dlq-runbook"
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
  tags                = local.resource_tags["alarm"]
}

# --- the version being rolled out, on its own figures (EMF from the daemon) ---------------
# A backlog or a DLQ full of the old version's failures does not stop the fix; only what
# instances running this release do. `sqs-poller deploy start` hands these to the refresh.

locals {
  release_dimensions = { Deployment = var.name, Version = local.release }
}

resource "aws_cloudwatch_metric_alarm" "release_dead_lettered" {
  alarm_name          = "${var.name}-release-dead-lettered"
  alarm_description   = "sqs-poller ${var.name}: release ${local.release} dead-lettered more than ${var.release_dead_lettered_threshold} messages in a minute, all queues together. Rolls back its rollout. Runbook: docs/operations.md#rollout-and-rollback"
  namespace           = local.metrics_namespace
  metric_name         = "DeadLettered"
  dimensions          = local.release_dimensions
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.release_dead_lettered_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.resource_tags["alarm"]
}

# The same, one queue at a time, with each queue's own threshold (a queues map only: in the
# one-queue form the alarm above is that queue's). Its data is the EMF dimension set
# Deployment, Version, Queue.
resource "aws_cloudwatch_metric_alarm" "release_queue_dead_lettered" {
  for_each = local.one_queue_form ? {} : local.queues

  alarm_name          = "${each.value.alarm_prefix}-release-dead-lettered"
  alarm_description   = "sqs-poller ${var.name}: release ${local.release} dead-lettered more than ${each.value.alarms.release_dead_lettered} messages of queue ${each.value.name} in a minute. Rolls back its rollout. Runbook: docs/operations.md#rollout-and-rollback"
  namespace           = local.metrics_namespace
  metric_name         = "DeadLettered"
  dimensions          = merge(local.release_dimensions, { Queue = each.value.name })
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.alarms.release_dead_lettered
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.resource_tags["alarm"]
}

resource "aws_cloudwatch_metric_alarm" "release_handler_errors" {
  alarm_name          = "${var.name}-release-handler-errors"
  alarm_description   = "sqs-poller ${var.name}: more than ${var.release_error_rate_threshold * 100}% of release ${local.release}'s handler calls failed for 3 minutes. Rolls back its rollout. Runbook: docs/operations.md#rollout-and-rollback"
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.release_error_rate_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.resource_tags["alarm"]

  metric_query {
    id          = "error_rate"
    expression  = "IF(errors + deleted > 0, errors / (errors + deleted), 0)"
    label       = "Handler error rate of this release"
    return_data = true
  }

  metric_query {
    id = "errors"

    metric {
      namespace   = local.metrics_namespace
      metric_name = "HandlerErrors"
      dimensions  = local.release_dimensions
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id = "deleted"

    metric {
      namespace   = local.metrics_namespace
      metric_name = "Deleted"
      dimensions  = local.release_dimensions
      stat        = "Sum"
      period      = 60
    }
  }
}
