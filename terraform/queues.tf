# What the queues map means, in one place: every other file reads local.queues (keyed like
# var.queues) and nothing else about the queues. Only variables here, no resources.
locals {
  # {} is the one-queue form: one queue from handler_target and the one-queue inputs. It
  # sits under the static key "default" so that sqs.tf's moved blocks carry an existing
  # one-queue deployment over in place (terraform/README.md, "Upgrading to the queues map").
  one_queue_form = length(var.queues) == 0
  queue_inputs = local.one_queue_form ? {
    default = {
      handler = {
        target       = var.handler_target
        style        = "message"
        timeout      = null
        batch_size   = null
        batch_window = null
        filters      = []
        options      = var.handler_options
      }
      priority            = 0
      weight              = 1
      max_concurrency     = 0
      visibility_timeout  = null
      wait_time_seconds   = null
      batch_size          = null
      max_receives        = null
      fifo                = null
      retention_seconds   = null
      sqs_name            = var.name
      seconds_per_message = 1
      flow                = null
      alarms = {
        dlq_depth             = 0
        oldest_message_age    = null
        release_dead_lettered = null
      }
    }
  } : var.queues

  queues = {
    for key, q in local.queue_inputs : key => {
      # The daemon's name for the queue (metrics, logs, --queue): the map's NAME; in the
      # one-queue form the queue URL's last path segment, which is its SQS name.
      name = local.one_queue_form ? "${q.sqs_name}${coalesce(q.fifo, var.fifo_queue) ? ".fifo" : ""}" : key
      # One-queue form: <name> and <name>-dlq, the names it always had.
      sqs_name     = "${coalesce(q.sqs_name, "${var.name}-${key}")}${coalesce(q.fifo, var.fifo_queue) ? ".fifo" : ""}"
      dlq_name     = "${coalesce(q.sqs_name, "${var.name}-${key}")}-dlq${coalesce(q.fifo, var.fifo_queue) ? ".fifo" : ""}"
      alarm_prefix = local.one_queue_form ? var.name : "${var.name}-${key}"

      fifo               = coalesce(q.fifo, var.fifo_queue)
      retention_seconds  = coalesce(q.retention_seconds, var.message_retention_seconds)
      visibility_timeout = coalesce(q.visibility_timeout, var.visibility_timeout)
      wait_time_seconds  = coalesce(q.wait_time_seconds, var.wait_time_seconds)
      batch_size         = coalesce(q.batch_size, var.batch_size)
      max_receives       = coalesce(q.max_receives, var.max_receives)
      priority           = q.priority
      weight             = q.weight
      max_concurrency    = q.max_concurrency
      handler = {
        target       = q.handler.target
        style        = q.handler.style
        timeout      = coalesce(q.handler.timeout, var.handler_timeout)
        batch_size   = q.handler.batch_size
        batch_window = q.handler.batch_window
        filters      = q.handler.filters
        options      = q.handler.options
      }
      flow                = q.flow
      seconds_per_message = q.seconds_per_message
      alarms = {
        dlq_depth             = q.alarms.dlq_depth
        oldest_message_age    = coalesce(q.alarms.oldest_message_age, var.oldest_message_age_threshold)
        release_dead_lettered = coalesce(q.alarms.release_dead_lettered, var.release_dead_lettered_threshold)
      }
    }
  }

  # What the daemon's config says of each queue, in NAME order, without the URLs (compute.tf
  # adds them): the template's input and part of the release digest.
  daemon_queues = [
    for key in sort(keys(local.queues)) : {
      key                = key
      name               = local.queues[key].name
      wait_time_seconds  = local.queues[key].wait_time_seconds
      batch_size         = local.queues[key].batch_size
      visibility_timeout = local.queues[key].visibility_timeout
      max_receives       = local.queues[key].max_receives
      priority           = local.queues[key].priority
      weight             = local.queues[key].weight
      max_concurrency    = local.queues[key].max_concurrency
      handler            = local.queues[key].handler
      # What the daemon's BacklogSeconds assumes for the queue until it has measured it.
      seconds_per_message = local.queues[key].seconds_per_message
      # Only the keys given: the daemon's own defaults stand for the rest.
      flow = local.queues[key].flow == null ? {} : {
        for setting, value in local.queues[key].flow : setting => value if value != null
      }
    }
  ]

  # The longest long poll of any queue: part of the drain the stop timeout must cover.
  longest_wait_seconds = max([for q in values(local.queues) : q.wait_time_seconds]...)
  longest_retention    = max([for q in values(local.queues) : q.retention_seconds]...)
}
