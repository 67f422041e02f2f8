variable "name" {
  description = "Name of the deployment: prefix for every resource, the queue name, the ASG name, and the systemd instance (config /etc/sqs-poller/<name>.toml)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,29}$", var.name))
    error_message = "name must be 1-30 characters of lowercase letters, digits and '-', starting with a letter."
  }
}

variable "ami_id" {
  description = "AMI built by packer/sqs-poller.pkr.hcl (the package in /opt/sqs-poller/venv, the systemd unit, the CloudWatch agent)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_types" {
  description = "Instance types the group may launch, in order of preference (the first is the launch template's). Several similar types let Spot find capacity."
  type        = list(string)
  default     = ["t3.small"]

  validation {
    condition     = length(var.instance_types) >= 1 && length(var.instance_types) <= 20 && alltrue([for type in var.instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", type))])
    error_message = "instance_types must list 1-20 instance types like c7i.large."
  }
}

variable "on_demand_base_capacity" {
  description = "Instances that are always on-demand, whatever the Spot share above them."
  type        = number
  default     = 1

  validation {
    condition     = var.on_demand_base_capacity >= 0 && floor(var.on_demand_base_capacity) == var.on_demand_base_capacity
    error_message = "on_demand_base_capacity must be a whole number, at least 0."
  }
}

variable "on_demand_percentage_above_base_capacity" {
  description = "Percentage of instances above the base that are on-demand; the rest are Spot. 100 (the default) uses no Spot; 0 runs everything above the base on Spot."
  type        = number
  default     = 100

  validation {
    condition     = var.on_demand_percentage_above_base_capacity >= 0 && var.on_demand_percentage_above_base_capacity <= 100
    error_message = "on_demand_percentage_above_base_capacity must be between 0 and 100."
  }
}

variable "spot_allocation_strategy" {
  description = "How Spot capacity is chosen among instance_types: capacity-optimized (fewest interruptions) or price-capacity-optimized."
  type        = string
  default     = "capacity-optimized"

  validation {
    condition     = contains(["capacity-optimized", "price-capacity-optimized", "capacity-optimized-prioritized"], var.spot_allocation_strategy)
    error_message = "spot_allocation_strategy must be capacity-optimized, price-capacity-optimized or capacity-optimized-prioritized."
  }
}

variable "root_volume_size" {
  description = "Root volume size in GiB (gp3, encrypted). At least the AMI's snapshot size."
  type        = number
  default     = 16

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 1024
    error_message = "root_volume_size must be between 8 and 1024 GiB."
  }
}

variable "ebs_kms_key_arn" {
  description = "KMS key for the root volume. null uses the account's EBS default key (the Auto Scaling service-linked role then needs no extra grant)."
  type        = string
  default     = null

  validation {
    condition     = var.ebs_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$", var.ebs_kms_key_arn))
    error_message = "ebs_kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not an alias or a key ID."
  }
}

variable "vpc_id" {
  description = "VPC of the subnets."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Private subnets (one per Availability Zone) for the Auto Scaling group. They need a route to SQS, SSM and CloudWatch: a NAT gateway or VPC endpoints."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", id))])
    error_message = "subnet_ids needs at least one subnet, each like subnet-0123456789abcdef0."
  }
}

variable "create_security_group" {
  description = "Create the module's HTTPS-egress-only security group. false: the workers get only security_group_ids."
  type        = bool
  default     = true
}

variable "security_group_ids" {
  description = "Existing security groups attached to the workers, in addition to the module's own unless create_security_group is false (for example one that reaches a database the handler uses)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", id))])
    error_message = "security_group_ids must look like sg-0123456789abcdef0."
  }
}

variable "use_name_prefix" {
  description = "Name the launch template, IAM role, instance profile and security group <name>-<random> (true) or exactly <name> (false). The queues and the group always use <name>."
  type        = bool
  default     = true
}

variable "create_iam_role" {
  description = "Create the workers' IAM role. false: use iam_role_name (the module still adds its inline policies and an instance profile to it)."
  type        = bool
  default     = true
}

variable "iam_role_name" {
  description = "Existing IAM role for the workers when create_iam_role is false."
  type        = string
  default     = null

  validation {
    condition     = var.iam_role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.iam_role_name))
    error_message = "iam_role_name must be an IAM role name (not an ARN)."
  }
}

variable "iam_role_path" {
  description = "Path of the IAM role and instance profile the module creates."
  type        = string
  default     = "/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9+=,.@_-]+/)*$", var.iam_role_path))
    error_message = "iam_role_path must start and end with '/', like /workers/."
  }
}

variable "iam_role_permissions_boundary" {
  description = "ARN of a policy that sets the permissions boundary of the role the module creates."
  type        = string
  default     = null

  validation {
    condition     = var.iam_role_permissions_boundary == null || can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$", var.iam_role_permissions_boundary))
    error_message = "iam_role_permissions_boundary must be an IAM policy ARN."
  }
}

variable "session_manager_access" {
  description = "Shell access through Session Manager: minimal (the SSM agent's session permissions only), managed-policy (AmazonSSMManagedInstanceCore, which also grants ssm:GetParameter(s) on every parameter in the account), or none."
  type        = string
  default     = "minimal"

  validation {
    condition     = contains(["minimal", "managed-policy", "none"], var.session_manager_access)
    error_message = "session_manager_access must be minimal, managed-policy or none."
  }
}

variable "min_size" {
  description = "Minimum number of instances. At least 1: every queue needs a worker, and the scaling metric assumes min_size instances' slots until a daemon reports its own."
  type        = number
  default     = 1

  validation {
    condition     = var.min_size >= 1
    error_message = "min_size must be at least 1 (every queue needs a worker; the scaling metric divides by the slots in service)."
  }
}

variable "max_size" {
  description = "Maximum number of instances."
  type        = number
  default     = 10

  validation {
    condition     = var.max_size >= 1 && var.max_size <= 1000
    error_message = "max_size must be between 1 and 1000."
  }
}

variable "max_instance_lifetime" {
  description = "Seconds after which Auto Scaling replaces an instance (0: never; else 86400-31536000)."
  type        = number
  default     = 0

  validation {
    condition     = var.max_instance_lifetime == 0 || (var.max_instance_lifetime >= 86400 && var.max_instance_lifetime <= 31536000)
    error_message = "max_instance_lifetime must be 0 or between 86400 (1 day) and 31536000 (365 days)."
  }
}

variable "protect_from_scale_in" {
  description = "Protect new instances from scale-in. Off: the termination hook already lets a worker drain."
  type        = bool
  default     = false
}

variable "instance_maintenance_policy" {
  description = "Healthy percentages while Auto Scaling replaces unhealthy or rebalanced instances; max 200 launches the replacement first, so a group of one keeps a worker. null: the group's default."
  type = object({
    min_healthy_percentage = number
    max_healthy_percentage = number
  })
  default = {
    min_healthy_percentage = 100
    max_healthy_percentage = 200
  }

  validation {
    condition = var.instance_maintenance_policy == null || (
      try(var.instance_maintenance_policy.min_healthy_percentage >= 0 && var.instance_maintenance_policy.min_healthy_percentage <= 100, false) &&
      try(var.instance_maintenance_policy.max_healthy_percentage >= 100 && var.instance_maintenance_policy.max_healthy_percentage <= 200, false) &&
      try(var.instance_maintenance_policy.max_healthy_percentage - var.instance_maintenance_policy.min_healthy_percentage <= 100, false)
    )
    error_message = "instance_maintenance_policy: min 0-100, max 100-200, and max - min at most 100."
  }
}

variable "target_backlog_seconds" {
  description = "Target tracking value: seconds of backlog per slot, the queueing delay you accept. For every queue, visible messages x its measured seconds per message, summed, divided by the slots of the daemons in service; see docs/operations.md, \"Scaling and its target\"."
  type        = number
  default     = 60

  validation {
    condition     = var.target_backlog_seconds > 0 && var.target_backlog_seconds <= 86400
    error_message = "target_backlog_seconds must be more than 0 and at most 86400 (one day)."
  }
}

variable "target_backlog_per_instance" {
  description = "Replaced by target_backlog_seconds (the group now scales on seconds of backlog per slot, over every queue). Must stay null."
  type        = number
  default     = null

  validation {
    condition     = var.target_backlog_per_instance == null
    error_message = "target_backlog_per_instance is replaced by target_backlog_seconds: the acceptable queueing delay in seconds (your old target divided by the messages one instance finishes a second; see terraform/README.md, \"Upgrading to the queues map\")."
  }
}

variable "instance_warmup_seconds" {
  description = "Seconds after launch before a new instance counts in scaling metrics and instance refresh (boot, READY=1, first polls)."
  type        = number
  default     = 120

  validation {
    condition     = var.instance_warmup_seconds >= 0 && var.instance_warmup_seconds <= 3600
    error_message = "instance_warmup_seconds must be between 0 and 3600."
  }
}

# --- the daemon's configuration, written to /etc/sqs-poller/<name>.toml by user data ---

variable "handler_target" {
  description = "The one-queue form's handler, as \"package.module:callable\" (its package installed in the AMI's virtualenv). null with a queues map, which names each queue's handler."
  type        = string
  default     = null

  validation {
    condition     = var.handler_target == null || can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$", var.handler_target))
    error_message = "handler_target must look like \"package.module:callable\"."
  }
}

variable "handler_options" {
  description = "The one-queue form's string options for a handler class's constructor ([handler.options]); a queues map sets handler.options per queue. No secrets: store them under ssm_parameter_path."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key in keys(var.handler_options) : can(regex("^[A-Za-z0-9_-]+$", key))])
    error_message = "handler_options keys must be letters, digits, '_' or '-' (TOML bare keys)."
  }
}

variable "handler_timeout" {
  description = "Seconds before a running handler counts as failed ([handler] timeout); the default of every queue's handler.timeout."
  type        = number
  default     = 300

  validation {
    condition     = var.handler_timeout >= 1 && var.handler_timeout <= 43200
    error_message = "handler_timeout must be between 1 and 43200 seconds."
  }
}

variable "processes" {
  description = "Worker processes per instance ([workers] processes). null: one per vCPU."
  type        = number
  default     = null

  validation {
    condition     = var.processes == null || try(var.processes >= 1 && var.processes <= 256 && floor(var.processes) == var.processes, false)
    error_message = "processes must be null or a whole number between 1 and 256."
  }
}

variable "concurrency" {
  description = "Messages in flight per worker process ([workers] concurrency)."
  type        = number
  default     = 10

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000 && floor(var.concurrency) == var.concurrency
    error_message = "concurrency must be a whole number between 1 and 1000."
  }
}

variable "shutdown_grace" {
  description = "Seconds in-flight handlers get after SIGTERM ([workers] shutdown_grace). User data sets the unit's TimeoutStopSec to this + wait_time_seconds + 40."
  type        = number
  default     = 30

  validation {
    condition     = var.shutdown_grace >= 0 && var.shutdown_grace <= 3600
    error_message = "shutdown_grace must be 0-3600 seconds."
  }
}

variable "wait_time_seconds" {
  description = "Long-poll wait ([queue] wait_time_seconds), 0-20; the default of every queue's wait_time_seconds."
  type        = number
  default     = 20

  validation {
    condition     = var.wait_time_seconds >= 0 && var.wait_time_seconds <= 20
    error_message = "wait_time_seconds must be between 0 and 20."
  }
}

variable "batch_size" {
  description = "Messages per receive ([queue] batch_size), 1-10; the default of every queue's batch_size."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10
    error_message = "batch_size must be between 1 and 10."
  }
}

variable "visibility_timeout" {
  description = "Seconds a received message stays hidden: the queue's default and [queue] visibility_timeout; the default of every queue's visibility_timeout."
  type        = number
  default     = 30

  validation {
    condition     = var.visibility_timeout >= 1 && var.visibility_timeout <= 43200
    error_message = "visibility_timeout must be between 1 and 43200."
  }
}

variable "max_receives" {
  description = "Receives before the daemon moves a failing message to the DLQ ([queue] max_receives); the default of every queue's max_receives."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receives >= 1 && var.max_receives <= 990
    error_message = "max_receives must be between 1 and 990."
  }
}

variable "redrive_margin" {
  description = "The queue's own redrive maxReceiveCount is max_receives + this: the backstop for messages that kill a worker outright, never reached by ordinary failures."
  type        = number
  default     = 3

  validation {
    condition     = var.redrive_margin >= 1
    error_message = "redrive_margin must be at least 1 so SQS never dead-letters before the daemon does."
  }
}

variable "log_level" {
  description = "Daemon log level ([logging] level)."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error"], var.log_level)
    error_message = "log_level must be debug, info, warning or error."
  }
}

# --- queues ---

variable "queues" {
  description = "Several queues on one fleet: NAME => settings, one [queues.NAME] table of the daemon's config each (with its queue, DLQ, redrive, alarms and dashboard row). {} (the default): the one-queue form, from handler_target and the other one-queue inputs. An attribute left null takes the module variable of the same meaning (visibility_timeout, max_receives, ...). Any number of queues: the scaling policy reads two metrics whatever their number (docs/operations.md)."
  type = map(object({
    handler = object({
      target       = string
      style        = optional(string, "message")
      timeout      = optional(number)
      batch_size   = optional(number)
      batch_window = optional(number)
      filters      = optional(list(string), [])
      options      = optional(map(string), {})
    })
    priority           = optional(number, 0)
    weight             = optional(number, 1)
    max_concurrency    = optional(number, 0)
    visibility_timeout = optional(number)
    wait_time_seconds  = optional(number)
    batch_size         = optional(number)
    max_receives       = optional(number)
    fifo               = optional(bool)
    retention_seconds  = optional(number)
    # The SQS name without ".fifo"; null: <name>-<NAME>. Set it to adopt an existing queue.
    sqs_name = optional(string)
    # What each daemon's BacklogSeconds assumes for this queue until it has measured it.
    seconds_per_message = optional(number, 1)
    flow = optional(object({
      max_per_second        = optional(number)
      breaker_failure_ratio = optional(number)
      breaker_min_messages  = optional(number)
      breaker_cooldown      = optional(number)
    }))
    alarms = optional(object({
      dlq_depth             = optional(number, 0)
      oldest_message_age    = optional(number)
      release_dead_lettered = optional(number)
    }), {})
  }))
  default = {}

  validation {
    condition     = alltrue([for name in keys(var.queues) : can(regex("^[a-z0-9][a-z0-9_-]{0,39}$", name))])
    error_message = "queues: each NAME must be 1-40 characters of lowercase letters, digits, '_' and '-', starting with a letter or digit (the daemon's queue name, and part of the SQS names)."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.sqs_name == null || can(regex("^[A-Za-z0-9_-]{1,71}$", q.sqs_name))])
    error_message = "queues: sqs_name must be 1-71 letters, digits, '_' or '-' (without .fifo: the DLQ adds -dlq and FIFO queues .fifo)."
  }

  validation {
    condition = alltrue([for q in values(var.queues) : (
      can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$", q.handler.target)) &&
      contains(["message", "batch", "lambda"], q.handler.style) &&
      (q.handler.timeout == null || try(q.handler.timeout >= 1 && q.handler.timeout <= 43200, false)) &&
      (q.handler.batch_size == null || try(q.handler.batch_size >= 1 && q.handler.batch_size <= 10000 && floor(q.handler.batch_size) == q.handler.batch_size, false)) &&
      (q.handler.batch_window == null || try(q.handler.batch_window >= 0 && q.handler.batch_window <= 300, false)) &&
      alltrue([for pattern in q.handler.filters : can(jsondecode(pattern))]) &&
      alltrue([for key in keys(q.handler.options) : can(regex("^[A-Za-z0-9_-]+$", key))])
    )])
    error_message = "queues: handler.target must look like \"package.module:callable\", handler.style be message, batch or lambda, handler.timeout 1-43200, handler.batch_size 1-10000, handler.batch_window 0-300, every handler.filters entry a JSON document, and handler.options keys letters, digits, '_' or '-'."
  }

  validation {
    condition = alltrue([for q in values(var.queues) : (
      q.priority >= -1000 && q.priority <= 1000 && floor(q.priority) == q.priority &&
      q.weight >= 1 && q.weight <= 1000 && floor(q.weight) == q.weight &&
      q.max_concurrency >= 0 && q.max_concurrency <= 1000 && floor(q.max_concurrency) == q.max_concurrency
    )])
    error_message = "queues: priority must be a whole number in -1000..1000, weight in 1..1000, max_concurrency in 0..1000 (0: workers.concurrency)."
  }

  validation {
    condition = alltrue([for q in values(var.queues) : (
      (q.visibility_timeout == null || try(q.visibility_timeout >= 1 && q.visibility_timeout <= 43200, false)) &&
      (q.wait_time_seconds == null || try(q.wait_time_seconds >= 0 && q.wait_time_seconds <= 20, false)) &&
      (q.batch_size == null || try(q.batch_size >= 1 && q.batch_size <= 10, false)) &&
      (q.max_receives == null || try(q.max_receives >= 1 && q.max_receives <= 990, false)) &&
      (q.retention_seconds == null || try(q.retention_seconds >= 60 && q.retention_seconds <= 1209600, false))
    )])
    error_message = "queues: visibility_timeout must be 1-43200, wait_time_seconds 0-20, batch_size 1-10, max_receives 1-990, retention_seconds 60-1209600."
  }

  validation {
    condition = alltrue([for q in values(var.queues) : (
      q.seconds_per_message >= 0.001 && q.seconds_per_message <= 43200 &&
      q.alarms.dlq_depth >= 0 &&
      (q.alarms.oldest_message_age == null || try(q.alarms.oldest_message_age > 0, false)) &&
      (q.alarms.release_dead_lettered == null || try(q.alarms.release_dead_lettered >= 0, false))
    )])
    error_message = "queues: seconds_per_message must be 0.001-43200 (the daemon's range), alarms.dlq_depth and alarms.release_dead_lettered at least 0, alarms.oldest_message_age positive."
  }

  validation {
    condition = alltrue([for q in values(var.queues) : q.flow == null || try(
      (q.flow.max_per_second == null || (q.flow.max_per_second >= 0 && q.flow.max_per_second <= 100000)) &&
      (q.flow.breaker_failure_ratio == null || (q.flow.breaker_failure_ratio >= 0.01 && q.flow.breaker_failure_ratio <= 1)) &&
      (q.flow.breaker_min_messages == null || (q.flow.breaker_min_messages >= 1 && q.flow.breaker_min_messages <= 100000 && floor(q.flow.breaker_min_messages) == q.flow.breaker_min_messages)) &&
      (q.flow.breaker_cooldown == null || (q.flow.breaker_cooldown >= 1 && q.flow.breaker_cooldown <= 3600)),
    false)])
    error_message = "queues: flow.max_per_second must be 0-100000, flow.breaker_failure_ratio 0.01-1, flow.breaker_min_messages a whole number 1-100000, flow.breaker_cooldown 1-3600."
  }
}

# --- the one-queue form's queue, and every queue's defaults ---

variable "fifo_queue" {
  description = "Create FIFO queues (names end in .fifo); the default of every queue's fifo."
  type        = bool
  default     = false
}

variable "message_retention_seconds" {
  description = "Retention of the work queue (the DLQ always keeps 14 days); the default of every queue's retention_seconds."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "message_retention_seconds must be between 60 and 1209600."
  }
}

variable "kms_key_arn" {
  description = "Existing customer managed KMS key for the queues and log groups. null creates one with rotation. Its key policy must let CloudWatch Logs use it for this deployment's log groups before the first apply: the caller_kms_key_policy_statement output is the statement to add."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID): CloudWatch Logs takes no alias or bare key ID."
  }
}

variable "ssm_parameter_path" {
  description = "SSM Parameter Store path the handler may read (secrets, once per process). null means /sqs-poller/<name>."
  type        = string
  default     = null

  validation {
    condition     = var.ssm_parameter_path == null || can(regex("^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$", var.ssm_parameter_path))
    error_message = "ssm_parameter_path must start with '/' and not end with '/'."
  }
}

variable "ssm_kms_key_arn" {
  description = "KMS key that encrypts the SecureString parameters under ssm_parameter_path, when it is not kms_key_arn / the module's key (null: only the module's key)."
  type        = string
  default     = null

  validation {
    condition     = var.ssm_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$", var.ssm_kms_key_arn))
    error_message = "ssm_kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

# --- rollout, drain, alarms ---

variable "canary_checkpoints" {
  description = "Rollout checkpoints (percent of the group replaced before each pause): unique, ascending, within 1-100, the last 100."
  type        = list(number)
  default     = [10, 50, 100]

  validation {
    condition = (
      length(var.canary_checkpoints) > 0 &&
      length(distinct(var.canary_checkpoints)) == length(var.canary_checkpoints) &&
      alltrue([for point in var.canary_checkpoints : point >= 1 && point <= 100 && floor(point) == point]) &&
      alltrue([for index, point in var.canary_checkpoints : index == 0 || point > var.canary_checkpoints[max(index - 1, 0)]]) &&
      var.canary_checkpoints[length(var.canary_checkpoints) - 1] == 100
    )
    error_message = "canary_checkpoints must be unique whole percentages within 1-100, ascending, ending with 100."
  }
}

variable "canary_checkpoint_delay" {
  description = "Seconds to watch the release's alarms at each checkpoint before continuing."
  type        = number
  default     = 600

  validation {
    condition     = var.canary_checkpoint_delay >= 0 && var.canary_checkpoint_delay <= 172800
    error_message = "canary_checkpoint_delay must be between 0 and 172800 seconds (two days)."
  }
}

variable "min_healthy_percentage" {
  description = "A rollout keeps at least this percentage of the group in service."
  type        = number
  default     = 100

  validation {
    condition     = var.min_healthy_percentage >= 0 && var.min_healthy_percentage <= 100
    error_message = "min_healthy_percentage must be between 0 and 100."
  }
}

variable "max_healthy_percentage" {
  description = "A rollout may run up to this percentage of the group at once; above 100 it launches replacements before the old instances drain (a group of one keeps its worker)."
  type        = number
  default     = 200

  validation {
    condition     = var.max_healthy_percentage >= 100 && var.max_healthy_percentage <= 200
    error_message = "max_healthy_percentage must be between 100 and 200."
  }
}

variable "lifecycle_heartbeat_timeout" {
  description = "Seconds a terminating instance may stay in Terminating:Wait while the daemon drains; must exceed shutdown_grace + wait_time_seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.lifecycle_heartbeat_timeout >= 30 && var.lifecycle_heartbeat_timeout <= 7200
    error_message = "lifecycle_heartbeat_timeout must be between 30 and 7200 seconds."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic for alarm and OK notifications. null: alarms only show on the dashboard (and still drive rollback)."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN."
  }
}

variable "oldest_message_age_threshold" {
  description = "Alarm when a queue's oldest visible message is older than this many seconds; the default of every queue's alarms.oldest_message_age."
  type        = number
  default     = 900
}

variable "dead_lettered_threshold" {
  description = "Alarm when more than this many messages are dead-lettered in 5 minutes, all versions together."
  type        = number
  default     = 0

  validation {
    condition     = var.dead_lettered_threshold >= 0
    error_message = "dead_lettered_threshold must be at least 0."
  }
}

variable "release_dead_lettered_threshold" {
  description = "Roll a rollout back when instances of the new release dead-letter more than this many messages in any minute of 5 (all queues together; also the default of every queue's alarms.release_dead_lettered)."
  type        = number
  default     = 0

  validation {
    condition     = var.release_dead_lettered_threshold >= 0
    error_message = "release_dead_lettered_threshold must be at least 0."
  }
}

variable "release_error_rate_threshold" {
  description = "Roll a rollout back when more than this share (0-1) of the new release's handler calls fail, three minutes in a row."
  type        = number
  default     = 0.1

  validation {
    condition     = var.release_error_rate_threshold > 0 && var.release_error_rate_threshold < 1
    error_message = "release_error_rate_threshold must be between 0 and 1 (exclusive)."
  }
}

variable "log_retention_days" {
  description = "Retention of the daemon's log groups."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs value of at least one year (365, 400, 545, 731, ...)."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "resource_tags" {
  description = "Extra tags per kind of resource, on top of tags: keys queue, autoscaling_group, launch_template, instance, volume, iam_role, security_group, log_group, alarm, kms_key, bucket."
  type        = map(map(string))
  default     = {}

  validation {
    condition = alltrue([for kind in keys(var.resource_tags) : contains([
      "queue", "autoscaling_group", "launch_template", "instance", "volume", "iam_role",
      "security_group", "log_group", "alarm", "kms_key", "bucket",
    ], kind)])
    error_message = "resource_tags keys must be among queue, autoscaling_group, launch_template, instance, volume, iam_role, security_group, log_group, alarm, kms_key, bucket."
  }
}
