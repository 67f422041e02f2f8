# One work queue, its DLQ and the DLQ's redrive allow policy for every entry of local.queues.
resource "aws_sqs_queue" "dlq" {
  for_each = local.queues

  name                        = each.value.dlq_name
  fifo_queue                  = each.value.fifo
  content_based_deduplication = each.value.fifo ? false : null
  # 14 days, the SQS maximum: time to read the alarm, fix the handler and replay.
  message_retention_seconds         = local.dlq_retention_seconds
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.resource_tags["queue"]
}

resource "aws_sqs_queue" "this" {
  for_each = local.queues

  name                              = each.value.sqs_name
  fifo_queue                        = each.value.fifo
  content_based_deduplication       = each.value.fifo ? false : null
  visibility_timeout_seconds        = each.value.visibility_timeout
  receive_wait_time_seconds         = each.value.wait_time_seconds
  message_retention_seconds         = each.value.retention_seconds
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300

  # Backstop only: the daemon dead-letters after max_receives with the reason attached;
  # SQS takes over for messages that crash a worker before it can.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receives + var.redrive_margin
  })

  tags = local.resource_tags["queue"]
}

# Only its own queue may use a DLQ as its dead-letter target.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = local.queues

  queue_url = aws_sqs_queue.dlq[each.key].id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.this[each.key].arn]
  })
}

# A deployment made before the queues map had one queue of each: they become the one-queue
# form's entry, "default", in place (nothing is destroyed; the plan says "has moved to").
moved {
  from = aws_sqs_queue.main
  to   = aws_sqs_queue.this["default"]
}

moved {
  from = aws_sqs_queue.dlq
  to   = aws_sqs_queue.dlq["default"]
}

moved {
  from = aws_sqs_queue_redrive_allow_policy.dlq
  to   = aws_sqs_queue_redrive_allow_policy.dlq["default"]
}

moved {
  from = aws_cloudwatch_metric_alarm.dlq_messages
  to   = aws_cloudwatch_metric_alarm.dlq_messages["default"]
}

moved {
  from = aws_cloudwatch_metric_alarm.oldest_message_age
  to   = aws_cloudwatch_metric_alarm.oldest_message_age["default"]
}
