# The daemon's JSON log lines (journald -> sqs-poller-journal-export -> CloudWatch agent).
resource "aws_cloudwatch_log_group" "daemon" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.resource_tags["log_group"]
}

# The CloudWatch agent's Prometheus scrape of /metrics, as embedded metric format.
resource "aws_cloudwatch_log_group" "metrics" {
  name              = local.metrics_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.resource_tags["log_group"]
}

resource "aws_cloudwatch_log_metric_filter" "dead_lettered" {
  name           = "${var.name}-dead-lettered"
  log_group_name = aws_cloudwatch_log_group.daemon.name
  pattern        = "{ $.event = \"message_dead_lettered\" }"

  metric_transformation {
    name          = "DeadLetteredMessages"
    namespace     = local.metrics_namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}
