locals {
  # Rows: the scaling metric and the group; one row a queue; then the whole deployment.
  queue_rows_top = 6
  after_queues   = local.queue_rows_top + 6 * length(local.scaling_queues)

  scaling_widgets = [
    {
      type   = "metric"
      x      = 0
      y      = 0
      width  = 12
      height = 6
      properties = {
        title  = "Seconds of backlog per slot (scaling metric) vs target"
        region = local.region
        view   = "timeSeries"
        period = local.scaling_period_seconds
        metrics = [
          [{ id = "backlog_seconds", expression = local.backlog_seconds_expression, label = "Seconds of backlog per slot" }],
          [{ id = "ready_slots", expression = local.ready_slots_expression, visible = false }],
          [local.metrics_namespace, "BacklogSeconds", "Deployment", var.name, { id = "backlog", stat = "Average", visible = false }],
          [local.metrics_namespace, "Slots", "Deployment", var.name, { id = "slot_samples", stat = "Sum", visible = false }],
        ]
        annotations = {
          horizontal = [{ label = "Target", value = var.target_backlog_seconds }]
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
        title  = "Instances and slots in service"
        region = local.region
        view   = "timeSeries"
        stat   = "Average"
        period = 60 # the group's metrics are one a minute: six Slots samples a daemon
        metrics = [
          ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", local.asg_name],
          ["AWS/AutoScaling", "GroupDesiredCapacity", "AutoScalingGroupName", local.asg_name],
          ["AWS/AutoScaling", "GroupTerminatingInstances", "AutoScalingGroupName", local.asg_name],
          [{ id = "slots", expression = "slot_samples / ${60 / 10}", label = "Slots in service", yAxis = "right" }],
          [local.metrics_namespace, "Slots", "Deployment", var.name, { id = "slot_samples", stat = "Sum", visible = false }],
        ]
      }
    },
  ]

  # One row a queue: its traffic, its oldest message, what a message costs, its dead letters.
  queue_widgets = flatten([
    for index, q in local.scaling_queues : [
      {
        type   = "metric"
        x      = 0
        y      = local.queue_rows_top + 6 * index
        width  = 6
        height = 6
        properties = {
          title  = "${q.queue}: messages"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 60
          metrics = [
            ["AWS/SQS", "NumberOfMessagesSent", "QueueName", q.sqs_name],
            ["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", q.sqs_name],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q.sqs_name, { stat = "Maximum" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", q.sqs_name, { stat = "Maximum" }],
          ]
        }
      },
      {
        type   = "metric"
        x      = 6
        y      = local.queue_rows_top + 6 * index
        width  = 6
        height = 6
        properties = {
          title  = "${q.queue}: age of oldest message (s)"
          region = local.region
          view   = "timeSeries"
          stat   = "Maximum"
          period = 60
          metrics = [
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", q.sqs_name],
          ]
          annotations = {
            horizontal = [{ label = "Alarm", value = local.queues[local.scaling_keys[index]].alarms.oldest_message_age }]
          }
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = local.queue_rows_top + 6 * index
        width  = 6
        height = 6
        properties = {
          title  = "${q.queue}: seconds per message (scaling input)"
          region = local.region
          view   = "timeSeries"
          stat   = "Average"
          period = 60
          metrics = [
            [local.metrics_namespace, "SecondsPerMessage", "Deployment", var.name, "Queue", q.queue],
          ]
          annotations = {
            horizontal = [{ label = "Assumed until measured", value = q.seconds_per_message }]
          }
        }
      },
      {
        type   = "metric"
        x      = 18
        y      = local.queue_rows_top + 6 * index
        width  = 6
        height = 6
        properties = {
          title  = "${q.queue}: DLQ depth and dead-lettered"
          region = local.region
          view   = "timeSeries"
          period = 300
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.queues[local.scaling_keys[index]].dlq_name, { stat = "Maximum", label = "DLQ depth" }],
            [local.metrics_namespace, "DeadLettered", "Deployment", var.name, "Queue", q.queue, { stat = "Sum", label = "Dead-lettered (EMF, every release)" }],
          ]
        }
      },
    ]
  ])

  deployment_widgets = [
    {
      type   = "metric"
      x      = 0
      y      = local.after_queues
      width  = 12
      height = 6
      properties = {
        title  = "Dead-lettered messages, every queue"
        region = local.region
        view   = "timeSeries"
        period = 300
        metrics = [
          [local.metrics_namespace, "DeadLetteredMessages", { stat = "Sum", label = "Dead-lettered (daemon logs)" }],
        ]
      }
    },
    {
      type   = "alarm"
      x      = 12
      y      = local.after_queues
      width  = 12
      height = 6
      properties = {
        title = "Alarms"
        alarms = concat(
          [for key in local.scaling_keys : aws_cloudwatch_metric_alarm.dlq_messages[key].arn],
          [for key in local.scaling_keys : aws_cloudwatch_metric_alarm.oldest_message_age[key].arn],
          [aws_cloudwatch_metric_alarm.dead_lettered.arn],
          [aws_cloudwatch_metric_alarm.release_dead_lettered.arn],
          [for alarm in values(aws_cloudwatch_metric_alarm.release_queue_dead_lettered) : alarm.arn],
          [aws_cloudwatch_metric_alarm.release_handler_errors.arn],
        )
      }
    },
    {
      type   = "metric"
      x      = 0
      y      = local.after_queues + 6
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
      y      = local.after_queues + 12
      width  = 24
      height = 6
      properties = {
        title  = "Latest warnings and errors"
        region = local.region
        view   = "table"
        query  = "SOURCE '${aws_cloudwatch_log_group.daemon.name}' | fields @timestamp, @logStream, level, event, queue, message_id, receive_count | filter level in [\"warning\", \"error\", \"critical\"] | sort @timestamp desc | limit 50"
      }
    },
  ]

  dashboard_widgets = concat(local.scaling_widgets, local.queue_widgets, local.deployment_widgets)
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = "sqs-poller-${var.name}"
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
