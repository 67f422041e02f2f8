# Optional bucket for message bodies too large for SQS ([payload] s3_bucket), in the format of
# AWS's SQS Extended Client. Producers put an object and send a pointer; the workers read it
# and delete it once the message is deleted. Objects of dead-lettered messages stay for
# `dlq replay` until the lifecycle rule expires them.

variable "payload_bucket" {
  description = "Create an S3 bucket for large message bodies (the [payload] section) and let the workers read and delete its objects."
  type        = bool
  default     = false
}

variable "payload_expiry_days" {
  description = "Days before lifecycle removes a payload object: the backstop for objects whose message was never deleted. Must outlast a message's whole life: the longest queue retention plus the DLQ's 14 days."
  type        = number
  default     = 32

  validation {
    condition     = var.payload_expiry_days >= 15 && var.payload_expiry_days <= 3650
    error_message = "payload_expiry_days must be between 15 and 3650."
  }
}

locals {
  dlq_retention_seconds = 1209600
  payload_bucket_arn    = var.payload_bucket ? aws_s3_bucket.payload[0].arn : null
}

resource "aws_s3_bucket" "payload" {
  #checkov:skip=CKV_AWS_18:Payloads are transient copies of queue messages; audit reads with CloudTrail data events rather than a second log bucket this module would have to own.
  #checkov:skip=CKV_AWS_21:Versioning would keep a deleted body (possibly personal data) after its message is gone; the queue, not S3, is the record.
  #checkov:skip=CKV_AWS_144:Cross-region replication would copy transient bodies whose lifetime the queue's retention bounds; the queue itself is regional.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events: the pointer message on SQS is the notification.
  count = var.payload_bucket ? 1 : 0

  bucket_prefix = "${var.name}-payloads-"
  tags          = local.resource_tags["bucket"]

  lifecycle {
    precondition {
      condition     = var.payload_expiry_days * 86400 > local.longest_retention + local.dlq_retention_seconds
      error_message = "payload_expiry_days must be longer than the longest queue retention (message_retention_seconds, or a queue's retention_seconds) plus the DLQ's 14 days, or a dead-lettered message would lose its body before it can be replayed."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "payload" {
  count = var.payload_bucket ? 1 : 0

  bucket                  = aws_s3_bucket.payload[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "payload" {
  count = var.payload_bucket ? 1 : 0

  bucket = aws_s3_bucket.payload[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "payload" {
  count = var.payload_bucket ? 1 : 0

  bucket = aws_s3_bucket.payload[0].id

  rule {
    # The queues' key: producers already need kms:GenerateDataKey on it to send.
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "payload" {
  count = var.payload_bucket ? 1 : 0

  bucket = aws_s3_bucket.payload[0].id

  rule {
    id     = "expire-payloads"
    status = "Enabled"

    filter {}

    expiration {
      days = var.payload_expiry_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "payload" {
  count = var.payload_bucket ? 1 : 0

  bucket = aws_s3_bucket.payload[0].id
  policy = data.aws_iam_policy_document.payload_bucket[0].json

  depends_on = [aws_s3_bucket_public_access_block.payload]
}

data "aws_iam_policy_document" "payload_bucket" {
  count = var.payload_bucket ? 1 : 0

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.payload[0].arn,
      "${aws_s3_bucket.payload[0].arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# The workers read a payload and delete it after success (DeleteObjects checks DeleteObject);
# they never write: producers put objects, and `dlq replay` reuses the pointer as it is.
resource "aws_iam_role_policy" "payload" {
  count = var.payload_bucket ? 1 : 0

  name   = "sqs-poller-payload"
  role   = local.role_name
  policy = data.aws_iam_policy_document.payload_access[0].json
}

data "aws_iam_policy_document" "payload_access" {
  count = var.payload_bucket ? 1 : 0

  statement {
    sid       = "ReadAndDeletePayloads"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.payload[0].arn}/*"]
  }
}

output "payload_bucket_name" {
  description = "Bucket for large message bodies: [payload] s3_bucket for the workers and for producers (null when payload_bucket is false). Grant producers s3:PutObject on payload_bucket_arn/* and kms:GenerateDataKey on kms_key_arn."
  value       = var.payload_bucket ? aws_s3_bucket.payload[0].id : null
}

output "payload_bucket_arn" {
  description = "ARN of the payload bucket (null when payload_bucket is false)."
  value       = local.payload_bucket_arn
}
