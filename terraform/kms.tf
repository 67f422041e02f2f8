# One customer managed key for both queues and both log groups, unless the caller brings one.
resource "aws_kms_key" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "sqs-poller ${var.name}: SQS queues and CloudWatch log groups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.resource_tags["kms_key"]
}

resource "aws_kms_alias" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/sqs-poller-${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

# A key policy's Resource is always "*": it means "this key".
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:Key policy: "*" is the key itself; the account root statement delegates to IAM policies as AWS documents for every CMK.
  #checkov:skip=CKV_AWS_111:Key policy: "*" is the key itself; write access is limited to this account's IAM principals and the CloudWatch Logs service for our log groups.
  #checkov:skip=CKV_AWS_356:Key policy: "*" is the key itself, not every resource.
  statement {
    sid       = "AccountAdministersThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  source_policy_documents = [data.aws_iam_policy_document.logs_key_use.json]
}

# CloudWatch Logs encrypts this deployment's two log groups, and nothing else, with the
# key. Part of the module's own key policy; a caller's key needs the same statement
# (output caller_kms_key_policy_statement).
data "aws_iam_policy_document" "logs_key_use" {
  statement {
    sid = "CloudWatchLogsForThisDeployment"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        for group in [local.log_group_name, local.metrics_log_group_name] :
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${group}"
      ]
    }
  }
}
