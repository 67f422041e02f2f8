locals {
  queue_name_dim = aws_sqs_queue.main.name
  dlq_name_dim   = aws_sqs_queue.dlq.name

  dashboard_widgets = [
    {
      type   = "metric"
      x      = 0
      y      = 0
      width  = 12
      height = 6
      properties = {
        title  = "Backlog per instance (scaling metric) vs target"
        region = local.region
        view   = "timeSeries"
        stat   = "Average"
        period = 60
        metrics = [
          [{ id = "backlog", expression = "visible / in_service", label = "Backlog per instance" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.queue_name_dim, { id = "visible", stat = "Sum", visible = false }],
          ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", local.asg_name, { id = "in_service", visible = false }],
        ]
        annotations = {
          horizontal = [{ label = "Target", value = var.target_backlog_per_instance }]
        }
      }
    },
    {
      type   = "metric"
      x      = 12
      y      = 0
      width  = 12
      height = 6
      properties = {
        title  = "Instances"
        region = local.region
        view   = "timeSeries"
        stat   = "Average"
        period = 60
        metrics = [
          ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", local.asg_name],
          ["AWS/AutoScaling", "GroupDesiredCapacity", "AutoScalingGroupName", local.asg_name],
          ["AWS/AutoScaling", "GroupTerminatingInstances", "AutoScalingGroupName", local.asg_name],
        ]
      }
    },
    {
      type   = "metric"
      x      = 0
      y      = 6
      width  = 12
      height = 6
      properties = {
        title  = "Queue"
        region = local.region
        view   = "timeSeries"
        stat   = "Sum"
        period = 60
        metrics = [
          ["AWS/SQS", "NumberOfMessagesSent", "QueueName", local.queue_name_dim],
          ["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", local.queue_name_dim],
          ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", local.queue_name_dim, { stat = "Maximum" }],
        ]
      }
    },
    {
      type   = "metric"
      x      = 12
      y      = 6
      width  = 12
      height = 6
      properties = {
        title  = "Age of oldest message (s)"
        region = local.region
        view   = "timeSeries"
        stat   = "Maximum"
        period = 60
        metrics = [
          ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", local.queue_name_dim],
        ]
        annotations = {
          horizontal = [{ label = "Alarm", value = var.oldest_message_age_threshold }]
        }
      }
    },
    {
      type   = "metric"
      x      = 0
      y      = 12
      width  = 12
      height = 6
      properties = {
        title  = "Dead-lettered messages and DLQ depth"
        region = local.region
        view   = "timeSeries"
        period = 300
        metrics = [
          [local.metrics_namespace, "DeadLetteredMessages", { stat = "Sum", label = "Dead-lettered (daemon logs)" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.dlq_name_dim, { stat = "Maximum", label = "DLQ depth" }],
        ]
      }
    },
    {
      type   = "alarm"
      x      = 12
      y      = 12
      width  = 12
      height = 6
      properties = {
        title = "Alarms"
        alarms = [
          aws_cloudwatch_metric_alarm.dlq_messages.arn,
          aws_cloudwatch_metric_alarm.oldest_message_age.arn,
          aws_cloudwatch_metric_alarm.dead_lettered.arn,
          aws_cloudwatch_metric_alarm.release_dead_lettered.arn,
          aws_cloudwatch_metric_alarm.release_handler_errors.arn,
        ]
      }
    },
    {
      type   = "metric"
      x      = 0
      y      = 18
      width  = 24
      height = 6
      properties = {
        title  = "Newest release (${local.release}): what its instances did"
        region = local.region
        view   = "timeSeries"
        stat   = "Sum"
        period = 60
        metrics = [
          [local.metrics_namespace, "Deleted", "Deployment", var.name, "Version", local.release],
          [local.metrics_namespace, "HandlerErrors", "Deployment", var.name, "Version", local.release],
          [local.metrics_namespace, "DeadLettered", "Deployment", var.name, "Version", local.release],
        ]
      }
    },
    {
      type   = "log"
      x      = 0
      y      = 24
      width  = 24
      height = 6
      properties = {
        title  = "Latest warnings and errors"
        region = local.region
        view   = "table"
        query  = "SOURCE '${aws_cloudwatch_log_group.daemon.name}' | fields @timestamp, @logStream, level, event, message_id, receive_count | filter level in [\"warning\", \"error\", \"critical\"] | sort @timestamp desc | limit 50"
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = "sqs-poller-${var.name}"
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
