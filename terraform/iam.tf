data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_role" "existing" {
  count = var.create_iam_role ? 0 : 1

  name = var.iam_role_name
}

resource "aws_iam_role" "instance" {
  count = var.create_iam_role ? 1 : 0

  name                 = var.use_name_prefix ? null : var.name
  name_prefix          = var.use_name_prefix ? "${var.name}-" : null
  path                 = var.iam_role_path
  permissions_boundary = var.iam_role_permissions_boundary
  description          = "sqs-poller ${var.name} workers"
  assume_role_policy   = data.aws_iam_policy_document.assume_ec2.json
  tags                 = local.resource_tags["iam_role"]
}

resource "aws_iam_instance_profile" "instance" {
  name        = var.use_name_prefix ? null : var.name
  name_prefix = var.use_name_prefix ? "${var.name}-" : null
  path        = var.iam_role_path
  role        = local.role_name
  tags        = local.resource_tags["iam_role"]
}

# Session Manager shell access (no SSH key, no inbound port). "minimal" grants only what
# the SSM agent needs for sessions. "managed-policy" attaches AmazonSSMManagedInstanceCore,
# which also grants ssm:GetParameter(s) on every parameter of the account (so the path
# scoping below no longer limits reads), plus Run Command and inventory. "none": no shell.
resource "aws_iam_role_policy_attachment" "ssm_core" {
  count = var.session_manager_access == "managed-policy" ? 1 : 0

  role       = local.role_name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "session_manager" {
  count = var.session_manager_access == "minimal" ? 1 : 0

  name   = "sqs-poller-session-manager"
  role   = local.role_name
  policy = data.aws_iam_policy_document.session_manager.json
}

data "aws_iam_policy_document" "session_manager" {
  statement {
    sid = "RegisterWithSystemsManager"
    actions = [
      "ssm:UpdateInstanceInformation",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]
  }

  statement {
    sid = "OpenSessionChannels"
    # These four actions support no resource type: "*" is the only resource they take.
    actions = [
      "ssmmessages:CreateControlChannel",
      "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel",
      "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "poller" {
  name   = "sqs-poller"
  role   = local.role_name
  policy = data.aws_iam_policy_document.poller.json
}

data "aws_iam_policy_document" "poller" {
  statement {
    sid = "ConsumeTheQueues"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [for key in sort(keys(local.queues)) : aws_sqs_queue.this[key].arn]
  }

  statement {
    sid = "DeadLetterPoisonMessages"
    # GetQueueAttributes lets `sqs-poller check` prove a DLQ is reachable.
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = [for key in sort(keys(local.queues)) : aws_sqs_queue.dlq[key].arn]
  }

  statement {
    sid = "UseTheQueueKey"
    # Every queue and DLQ is encrypted with this one key. Decrypt to receive;
    # GenerateDataKey to send to an (encrypted) DLQ.
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }

  statement {
    sid = "ReadHandlerParameters"
    actions = [
      "ssm:GetParameter",
      "ssm:GetParameters",
      "ssm:GetParametersByPath",
    ]
    resources = [
      "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.ssm_parameter_path}",
      "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.ssm_parameter_path}/*",
    ]
  }

  dynamic "statement" {
    for_each = var.ssm_kms_key_arn == null ? [] : [var.ssm_kms_key_arn]

    content {
      sid       = "DecryptHandlerParameters"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }

  statement {
    sid = "DrainBeforeTermination"
    actions = [
      "autoscaling:CompleteLifecycleAction",
      "autoscaling:RecordLifecycleActionHeartbeat",
    ]
    resources = [local.asg_arn]
  }

  statement {
    sid = "ReportStoppedForGood"
    # sqs-poller-unhealthy@.service: a daemon that stopped for good gets replaced.
    actions   = ["autoscaling:SetInstanceHealth"]
    resources = [local.asg_arn]
  }

  statement {
    sid = "ShipLogsAndMetrics"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [
      "${aws_cloudwatch_log_group.daemon.arn}:*",
      "${aws_cloudwatch_log_group.metrics.arn}:*",
    ]
  }
}
