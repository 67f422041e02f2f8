# A production-shaped deployment: one fleet for two queues of a media team. Thumbnails are
# rendered by a handler class, and a slower transcoding queue runs a batch handler beside it
# at a lower priority, both baked into the AMI
# (`packer build -var 'extra_requirements=thumbnailer==2.4.1 transcoder==1.8.0' packer/`).

data "aws_caller_identity" "current" {}

# CloudWatch alarms cannot publish to a topic encrypted with the AWS managed aws/sns key
# (its policy cannot grant the CloudWatch service), so the topic gets a key of its own.
resource "aws_kms_key" "alarms" {
  description             = "media alarm notifications"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.alarms_key.json
}

data "aws_iam_policy_document" "alarms_key" {
  #checkov:skip=CKV_AWS_109:Key policy: "*" is the key itself; the account root statement delegates to IAM policies as AWS documents for every CMK.
  #checkov:skip=CKV_AWS_111:Key policy: "*" is the key itself; write access is limited to this account's IAM principals and CloudWatch alarms of this account.
  #checkov:skip=CKV_AWS_356:Key policy: "*" is the key itself, not every resource.
  statement {
    sid       = "AccountAdministersThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic" "alarms" {
  name              = "media-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
}

module "media" {
  source = "../.."

  name       = "media"
  ami_id     = var.ami_id
  vpc_id     = var.vpc_id
  subnet_ids = var.private_subnet_ids

  # Two on-demand instances always; everything above them on Spot, over three similar
  # types (the daemon drains on Spot notices and rebalance recommendations).
  instance_types                           = ["c7i.large", "c6i.large", "m7i.large"]
  on_demand_base_capacity                  = 2
  on_demand_percentage_above_base_capacity = 0
  min_size                                 = 2
  max_size                                 = 20
  # Scale so that no message waits more than about a minute: for each queue, visible
  # messages x the seconds a message holds a slot, per slot in service.
  target_backlog_seconds = 60

  processes      = 2
  concurrency    = 8
  shutdown_grace = 30

  queues = {
    thumbnails = {
      handler = {
        target  = "thumbnailer.worker:Handler"
        timeout = 120
        options = {
          bucket       = "example-thumbnails-output"
          sizes        = "64,256,1024"
          secrets_path = "/sqs-poller/thumbnails"
        }
      }
      priority            = 10
      visibility_timeout  = 60
      max_receives        = 5
      seconds_per_message = 0.3
      alarms = {
        oldest_message_age = 300
      }
    }
    transcodes = {
      handler = {
        target       = "transcoder.worker:handle_batch"
        style        = "batch"
        batch_size   = 4
        batch_window = 2
        timeout      = 900
      }
      priority            = 0
      max_concurrency     = 4
      visibility_timeout  = 120
      max_receives        = 3
      seconds_per_message = 20
      # Its encoder service takes at most 5 starts a second from this fleet's every host.
      flow = {
        max_per_second = 5
      }
      alarms = {
        oldest_message_age    = 1800
        dlq_depth             = 10
        release_dead_lettered = 2
      }
    }
  }

  canary_checkpoints           = [10, 50, 100]
  canary_checkpoint_delay      = 600
  min_healthy_percentage       = 100
  max_healthy_percentage       = 200
  lifecycle_heartbeat_timeout  = 300
  oldest_message_age_threshold = 300
  alarm_topic_arn              = aws_sns_topic.alarms.arn

  iam_role_path          = "/workers/"
  session_manager_access = "minimal"

  tags = {
    Team = "media"
  }
  resource_tags = {
    alarm = { Pager = "media-oncall" }
  }
}
