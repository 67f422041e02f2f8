locals {
  daemon_config = templatefile("${path.module}/templates/poller.toml.tftpl", {
    name               = var.name
    queue_url          = aws_sqs_queue.main.url
    dlq_url            = aws_sqs_queue.dlq.url
    region             = local.region
    wait_time_seconds  = var.wait_time_seconds
    batch_size         = var.batch_size
    visibility_timeout = var.visibility_timeout
    max_receives       = var.max_receives
    processes          = var.processes
    concurrency        = var.concurrency
    shutdown_grace     = var.shutdown_grace
    handler_target     = var.handler_target
    handler_timeout    = var.handler_timeout
    handler_options    = var.handler_options
    log_level          = var.log_level
    hook_name          = local.lifecycle_hook_name
    asg_name           = local.asg_name
    heartbeat_seconds  = local.lifecycle_heartbeat_seconds
  })

  user_data = templatefile("${path.module}/templates/user_data.sh.tftpl", {
    name                   = var.name
    config                 = local.daemon_config
    log_group_name         = local.log_group_name
    metrics_log_group_name = local.metrics_log_group_name
    metrics_namespace      = local.metrics_namespace
  })

  # Everything the Auto Scaling console can graph; free at one-minute granularity.
  group_metrics = [
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupStandbyInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
  ]
}

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-"
  description            = "sqs-poller ${var.name} workers"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  ebs_optimized          = true
  update_default_version = true
  user_data              = base64encode(local.user_data)

  iam_instance_profile {
    arn = aws_iam_instance_profile.instance.arn
  }

  # IMDSv2 only, and one hop: a container on the host cannot reach the instance role.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  # No key_name and no public address: shell access is SSM Session Manager.
  network_interfaces {
    associate_public_ip_address = false
    delete_on_termination       = true
    security_groups             = concat([aws_security_group.instance.id], var.additional_security_group_ids)
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = var.name })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = var.name })
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "this" {
  name                      = local.asg_name
  vpc_zone_identifier       = var.subnet_ids
  min_size                  = var.min_size
  max_size                  = var.max_size
  health_check_type         = "EC2"
  health_check_grace_period = var.instance_warmup_seconds
  default_instance_warmup   = var.instance_warmup_seconds
  enabled_metrics           = local.group_metrics
  metrics_granularity       = "1Minute"
  termination_policies      = ["OldestLaunchTemplate", "OldestInstance"]

  # A version number, never $Latest: a refresh rolls exactly this version out, and
  # auto rollback returns to the previous number.
  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # Canary: replace 10 %, watch the alarms, then 50 %, then the rest; any alarm rolls back.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      checkpoint_percentages = var.canary_checkpoints
      checkpoint_delay       = var.canary_checkpoint_delay
      min_healthy_percentage = var.min_healthy_percentage
      instance_warmup        = var.instance_warmup_seconds
      skip_matching          = true
      auto_rollback          = true

      alarm_specification {
        alarms = [
          aws_cloudwatch_metric_alarm.dead_lettered.alarm_name,
          aws_cloudwatch_metric_alarm.oldest_message_age.alarm_name,
        ]
      }
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = var.name })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # Target tracking owns the desired capacity.
    ignore_changes = [desired_capacity]

    precondition {
      condition     = var.lifecycle_heartbeat_timeout > var.shutdown_grace + var.wait_time_seconds
      error_message = "lifecycle_heartbeat_timeout must exceed shutdown_grace + wait_time_seconds, or instances terminate mid-drain."
    }

    precondition {
      condition     = var.max_size >= var.min_size
      error_message = "max_size must be at least min_size."
    }
  }
}

# Every termination (scale-in, refresh, rebalancing) waits here while the daemon drains and
# then completes the action. A resource of its own, not initial_lifecycle_hook: changing
# the timeout then updates the hook instead of replacing the whole group.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = local.lifecycle_hook_name
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.lifecycle_heartbeat_timeout
  default_result         = "CONTINUE"
}

# Backlog per instance = visible messages / in-service instances, held at the target.
resource "aws_autoscaling_policy" "backlog_per_instance" {
  name                   = "${var.name}-backlog-per-instance"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = var.target_backlog_per_instance

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "Visible messages"
        return_data = false

        metric_stat {
          stat = "Sum"

          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"

            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.main.name
            }
          }
        }
      }

      metrics {
        id          = "in_service"
        label       = "In-service instances"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "AWS/AutoScaling"
            metric_name = "GroupInServiceInstances"

            dimensions {
              name  = "AutoScalingGroupName"
              value = aws_autoscaling_group.this.name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_instance"
        label       = "Visible messages per in-service instance"
        expression  = "visible / in_service"
        return_data = true
      }
    }
  }
}
