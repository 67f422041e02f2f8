locals {
  daemon_config = templatefile("${path.module}/templates/poller.toml.tftpl", {
    name           = var.name
    one_queue_form = local.one_queue_form
    queues = [
      for q in local.daemon_queues : merge(q, {
        url     = aws_sqs_queue.this[q.key].url
        dlq_url = aws_sqs_queue.dlq[q.key].url
      })
    ]
    region            = local.region
    processes         = var.processes
    concurrency       = var.concurrency
    shutdown_grace    = var.shutdown_grace
    log_level         = var.log_level
    hook_name         = local.lifecycle_hook_name
    asg_name          = local.asg_name
    heartbeat_seconds = local.lifecycle_heartbeat_seconds
    spot              = local.spot_enabled
    metrics_namespace = local.metrics_namespace
    release           = local.release
    control_parameter = local.control_parameter
  })

  # The release label the daemon puts on its per-version figures (EMF dimension Version)
  # and the rollout alarms watch: the AMI plus a digest of everything user data carries.
  release = "${var.ami_id}-${substr(sha256(jsonencode({
    template = filesha256("${path.module}/templates/poller.toml.tftpl")
    user     = filesha256("${path.module}/templates/user_data.sh.tftpl")
    values = [
      local.one_queue_form, local.daemon_queues, var.processes, var.concurrency,
      var.shutdown_grace, var.log_level, local.spot_enabled,
    ]
  })), 0, 10)}"

  user_data = templatefile("${path.module}/templates/user_data.sh.tftpl", {
    name                   = var.name
    config                 = local.daemon_config
    log_group_name         = local.log_group_name
    metrics_log_group_name = local.metrics_log_group_name
    metrics_namespace      = local.metrics_namespace
    stop_timeout_seconds   = local.stop_timeout_seconds
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
  name                   = var.use_name_prefix ? null : var.name
  name_prefix            = var.use_name_prefix ? "${var.name}-" : null
  description            = "sqs-poller ${var.name} workers"
  image_id               = var.ami_id
  instance_type          = var.instance_types[0]
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
    security_groups             = local.security_group_ids
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.resource_tags["instance"], { Name = var.name })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.resource_tags["volume"], { Name = var.name })
  }

  tags = local.resource_tags["launch_template"]
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
  max_instance_lifetime     = var.max_instance_lifetime
  protect_from_scale_in     = var.protect_from_scale_in
  # Spot: launch a replacement as soon as EC2 says an instance is at risk.
  capacity_rebalance = local.spot_enabled

  # On-demand base, Spot (or more on-demand) above it, over several instance types.
  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.on_demand_base_capacity
      on_demand_percentage_above_base_capacity = var.on_demand_percentage_above_base_capacity
      spot_allocation_strategy                 = var.spot_allocation_strategy
    }

    launch_template {
      # A version number, never $Latest. Terraform sets it only when it creates the group;
      # `sqs-poller deploy start` rolls each later version out (see lifecycle below).
      launch_template_specification {
        launch_template_id = aws_launch_template.this.id
        version            = aws_launch_template.this.latest_version
      }

      dynamic "override" {
        for_each = var.instance_types

        content {
          instance_type = override.value
        }
      }
    }
  }

  # Replacements (health checks, rebalancing) launch before the old instance goes: a
  # group of one keeps a worker.
  dynamic "instance_maintenance_policy" {
    for_each = var.instance_maintenance_policy == null ? [] : [var.instance_maintenance_policy]

    content {
      min_healthy_percentage = instance_maintenance_policy.value.min_healthy_percentage
      max_healthy_percentage = instance_maintenance_policy.value.max_healthy_percentage
    }
  }

  dynamic "tag" {
    for_each = merge(local.resource_tags["autoscaling_group"], { Name = var.name })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # Instances must not boot before the permissions their daemon uses at start.
  depends_on = [
    aws_iam_role_policy.poller,
    aws_iam_role_policy.session_manager,
    aws_iam_role_policy_attachment.ssm_core,
    aws_iam_role_policy.payload,
  ]

  lifecycle {
    # Target tracking owns the desired capacity. The saved launch template version stays
    # on what runs until a rollout succeeds: an instance refresh started with the new
    # version as its DesiredConfiguration then saves it, and a rollback returns to the
    # saved one. (Terraform updating it first is why auto rollback restored the new
    # version: hashicorp/terraform-provider-aws#34189.)
    ignore_changes = [
      desired_capacity,
      mixed_instances_policy[0].launch_template[0].launch_template_specification[0].version,
    ]

    precondition {
      condition     = var.lifecycle_heartbeat_timeout > local.stop_timeout_seconds
      error_message = "lifecycle_heartbeat_timeout must exceed shutdown_grace + the longest wait_time_seconds + 40 s (the unit's stop timeout), or instances terminate mid-drain."
    }

    precondition {
      condition     = local.one_queue_form == (var.handler_target != null)
      error_message = "Give either handler_target (one queue) or a queues map (each queue names its handler), not both and not neither."
    }

    precondition {
      condition     = alltrue([for q in values(local.queues) : q.max_concurrency <= var.concurrency])
      error_message = "queues: max_concurrency must be at most concurrency (the queues share a worker's slots)."
    }

    precondition {
      condition = alltrue([
        for q in values(local.queues) : q.handler.style == "message" || coalesce(q.handler.batch_size, 10) <= (q.max_concurrency > 0 ? q.max_concurrency : var.concurrency)
      ])
      error_message = "queues: a batch or lambda handler's batch_size (default 10) must be at most the queue's max_concurrency, or concurrency when that is 0: a worker never holds more than that."
    }

    precondition {
      condition     = var.max_size >= var.min_size
      error_message = "max_size must be at least min_size."
    }

    precondition {
      condition     = var.max_healthy_percentage - var.min_healthy_percentage <= 100
      error_message = "max_healthy_percentage - min_healthy_percentage must be at most 100 (an instance refresh rule)."
    }

    precondition {
      condition     = var.create_security_group || length(var.security_group_ids) > 0
      error_message = "With create_security_group = false, security_group_ids must name at least one group."
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

locals {
  # One entry a queue, in NAME order: its dashboard row, and what the daemons assume for it.
  scaling_keys = sort(keys(local.queues))
  scaling_queues = [
    for key in local.scaling_keys : {
      queue               = local.queues[key].name
      sqs_name            = local.queues[key].sqs_name
      seconds_per_message = local.queues[key].seconds_per_message
    }
  ]
  # Every input of the policy is high resolution: each daemon publishes BacklogSeconds and
  # Slots every 10 s, at 10-s boundaries (docs/operations.md, "What the daemon publishes for
  # scaling"), and the policy reads them on 10-s periods (provider >= 5.85: metric_stat period),
  # so a period sums one Slots sample of each ready daemon.
  scaling_period_seconds  = 10
  slot_samples_per_period = local.scaling_period_seconds / 10
  # Slots assumed while no daemon publishes (a fresh group): the fewest the group runs.
  fallback_slots             = var.min_size * coalesce(var.processes, 1) * var.concurrency
  ready_slots_expression     = "FILL(slot_samples, ${local.fallback_slots * local.slot_samples_per_period}) / ${local.slot_samples_per_period}"
  backlog_seconds_expression = "backlog / ready_slots"
}

# Seconds of backlog per slot: the slot-seconds of work waiting on every queue (each daemon's
# BacklogSeconds: visible messages x seconds per message, summed over its queues; averaged over
# the daemons, which all see the same queues), divided by the slots of the daemons in service.
# Two metrics whatever the number of queues. Held at target_backlog_seconds, the queueing
# delay accepted.
resource "aws_autoscaling_policy" "backlog_seconds" {
  name                   = "${var.name}-backlog-seconds"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value = var.target_backlog_seconds

    customized_metric_specification {
      metrics {
        id          = "backlog"
        label       = "Backlog in slot-seconds, as the daemons in service see it"
        return_data = false

        metric_stat {
          stat   = "Average"
          period = local.scaling_period_seconds

          metric {
            namespace   = local.metrics_namespace
            metric_name = "BacklogSeconds"

            dimensions {
              name  = "Deployment"
              value = var.name
            }
          }
        }
      }

      metrics {
        id          = "slot_samples"
        label       = "Slots of the daemons in service, one sample a period each"
        return_data = false

        metric_stat {
          stat   = "Sum"
          period = local.scaling_period_seconds

          metric {
            namespace   = local.metrics_namespace
            metric_name = "Slots"

            dimensions {
              name  = "Deployment"
              value = var.name
            }
          }
        }
      }

      metrics {
        id          = "ready_slots"
        label       = "Slots in service"
        expression  = local.ready_slots_expression
        return_data = false
      }

      metrics {
        id          = "backlog_seconds"
        label       = "Seconds of backlog per slot"
        expression  = local.backlog_seconds_expression
        return_data = true
      }
    }
  }
}
