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

variable "instance_type" {
  description = "EC2 instance type of the workers."
  type        = string
  default     = "t3.small"
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
}

variable "vpc_id" {
  description = "VPC of the subnets."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (one per Availability Zone) for the Auto Scaling group. They need a route to SQS, SSM and CloudWatch: a NAT gateway or VPC endpoints."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "additional_security_group_ids" {
  description = "Security groups attached to the workers in addition to the module's HTTPS-egress-only group (for example one that reaches a database the handler uses)."
  type        = list(string)
  default     = []
}

variable "min_size" {
  description = "Minimum number of instances. At least 1: backlog per instance divides by the in-service count."
  type        = number
  default     = 1

  validation {
    condition     = var.min_size >= 1
    error_message = "min_size must be at least 1 (the scaling metric divides by the number of in-service instances)."
  }
}

variable "max_size" {
  description = "Maximum number of instances."
  type        = number
  default     = 10
}

variable "target_backlog_per_instance" {
  description = "Target tracking value: visible messages per in-service instance. Set it to (acceptable queue latency in seconds) x (messages one instance finishes per second); see docs/operations.md."
  type        = number
  default     = 100

  validation {
    condition     = var.target_backlog_per_instance > 0
    error_message = "target_backlog_per_instance must be positive."
  }
}

variable "instance_warmup_seconds" {
  description = "Seconds after launch before a new instance counts in scaling metrics and instance refresh (boot, READY=1, first polls)."
  type        = number
  default     = 120
}

# --- the daemon's configuration, written to /etc/sqs-poller/<name>.toml by user data ---

variable "handler_target" {
  description = "The handler, as \"package.module:callable\"; its package must be installed in the AMI's virtualenv."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$", var.handler_target))
    error_message = "handler_target must look like \"package.module:callable\"."
  }
}

variable "handler_options" {
  description = "String options handed to a handler class's constructor ([handler.options]). No secrets: store them under ssm_parameter_path."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key in keys(var.handler_options) : can(regex("^[A-Za-z0-9_-]+$", key))])
    error_message = "handler_options keys must be letters, digits, '_' or '-' (TOML bare keys)."
  }
}

variable "handler_timeout" {
  description = "Seconds before a running handler counts as failed ([handler] timeout)."
  type        = number
  default     = 300
}

variable "processes" {
  description = "Worker processes per instance ([workers] processes). null: one per vCPU."
  type        = number
  default     = null
}

variable "concurrency" {
  description = "Messages in flight per worker process ([workers] concurrency)."
  type        = number
  default     = 10
}

variable "shutdown_grace" {
  description = "Seconds in-flight handlers get after SIGTERM ([workers] shutdown_grace). The systemd unit's TimeoutStopSec (90) must stay above this plus wait_time_seconds."
  type        = number
  default     = 30

  validation {
    condition     = var.shutdown_grace >= 0 && var.shutdown_grace <= 60
    error_message = "shutdown_grace must be 0-60 seconds; the systemd unit stops waiting after 90 seconds."
  }
}

variable "wait_time_seconds" {
  description = "Long-poll wait ([queue] wait_time_seconds), 0-20."
  type        = number
  default     = 20

  validation {
    condition     = var.wait_time_seconds >= 0 && var.wait_time_seconds <= 20
    error_message = "wait_time_seconds must be between 0 and 20."
  }
}

variable "batch_size" {
  description = "Messages per receive ([queue] batch_size), 1-10."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10
    error_message = "batch_size must be between 1 and 10."
  }
}

variable "visibility_timeout" {
  description = "Seconds a received message stays hidden; the queue's default and [queue] visibility_timeout."
  type        = number
  default     = 30

  validation {
    condition     = var.visibility_timeout >= 1 && var.visibility_timeout <= 43200
    error_message = "visibility_timeout must be between 1 and 43200."
  }
}

variable "max_receives" {
  description = "Receives before the daemon moves a failing message to the DLQ ([queue] max_receives)."
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

# --- queue ---

variable "fifo_queue" {
  description = "Create FIFO queues (names end in .fifo)."
  type        = bool
  default     = false
}

variable "message_retention_seconds" {
  description = "Retention of the main queue (the DLQ always keeps 14 days)."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "message_retention_seconds must be between 60 and 1209600."
  }
}

variable "kms_key_arn" {
  description = "Existing customer managed KMS key for the queues and log groups. null creates one with rotation."
  type        = string
  default     = null
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
}

# --- rollout, drain, alarms ---

variable "canary_checkpoints" {
  description = "Instance refresh checkpoints (percent of the group replaced before each pause); the last must be 100."
  type        = list(number)
  default     = [10, 50, 100]

  validation {
    condition     = length(var.canary_checkpoints) > 0 && var.canary_checkpoints[length(var.canary_checkpoints) - 1] == 100
    error_message = "canary_checkpoints must end with 100."
  }
}

variable "canary_checkpoint_delay" {
  description = "Seconds to watch the alarms at each checkpoint before continuing."
  type        = number
  default     = 600
}

variable "min_healthy_percentage" {
  description = "Instance refresh keeps at least this percentage of the group in service."
  type        = number
  default     = 90
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
}

variable "oldest_message_age_threshold" {
  description = "Alarm when the oldest visible message is older than this many seconds."
  type        = number
  default     = 900
}

variable "dead_lettered_threshold" {
  description = "Alarm (and roll back a refresh) when more than this many messages are dead-lettered in 5 minutes."
  type        = number
  default     = 0
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
