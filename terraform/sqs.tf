resource "aws_sqs_queue" "dlq" {
  name                        = local.dlq_name
  fifo_queue                  = var.fifo_queue
  content_based_deduplication = var.fifo_queue ? false : null
  # 14 days, the SQS maximum: time to read the alarm, fix the handler and replay.
  message_retention_seconds         = 1209600
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.resource_tags["queue"]
}

resource "aws_sqs_queue" "main" {
  name                              = local.queue_name
  fifo_queue                        = var.fifo_queue
  content_based_deduplication       = var.fifo_queue ? false : null
  visibility_timeout_seconds        = var.visibility_timeout
  receive_wait_time_seconds         = var.wait_time_seconds
  message_retention_seconds         = var.message_retention_seconds
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300

  # Backstop only: the daemon dead-letters after max_receives with the reason attached;
  # SQS takes over for messages that crash a worker before it can.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receives + var.redrive_margin
  })

  tags = local.resource_tags["queue"]
}

# Only this deployment's queue may use the DLQ as its dead-letter target.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}
