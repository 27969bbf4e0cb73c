variable "region" {
  description = "Region id, e.g. cn-north-4 (the function, its triggers and the agency's project)."
  type        = string
}

variable "project_id" {
  description = "Project id whose servers the function cleans (HUAWEICLOUD_SDK_PROJECT_ID)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.project_id))
    error_message = "project_id must be 1-64 letters, digits, _ or - (the project's id, not its name)."
  }
}

variable "project_name" {
  description = "Name of that project, where the execution agency's role is granted; null: the region's default project (named like the region, e.g. cn-north-4). Set it for a sub-project (cn-north-4_dev)."
  type        = string
  default     = null
}

variable "zip_path" {
  description = "Path of the zip built by `make package`: dist/ecs-metadata-janitor-<version>-py312-<arch>.zip."
  type        = string
}

variable "function_name" {
  description = "FunctionGraph function name."
  type        = string
  default     = "ecs-metadata-janitor"
}

variable "memory_size" {
  description = "Memory in MB."
  type        = number
  default     = 256
}

variable "timeout" {
  description = "Timeout in seconds (3-900); keep at least 10. The APIG trigger's backend timeout is capped at 60 s."
  type        = number
  default     = 300

  validation {
    condition     = var.timeout >= 3 && var.timeout <= 900 && floor(var.timeout) == var.timeout
    error_message = "timeout must be a whole number of seconds from 3 to 900."
  }
}

variable "dead_letter_url" {
  description = "DEAD_LETTER_URL: log, an http(s) URL or smn://<topic URN> (an SMN sink needs smn:topic:publish on the execution agency). Sensitive: an http(s) URL may carry a password or a token."
  type        = string
  default     = "log"
  sensitive   = true
}

variable "dry_run" {
  description = "DRY_RUN for every invocation: decide and report, delete nothing."
  type        = bool
  default     = false
}

# --- secrets: sensitive, no default, sent only in encrypted_user_data -------------------------

variable "webhook_secret" {
  description = "WEBHOOK_SECRET (whsec_...): the webhook (APIG) requests must be signed with it."
  type        = string
  sensitive   = true

  validation {
    condition = (
      startswith(var.webhook_secret, "whsec_")
      && can(regex("^[A-Za-z0-9+/]+={0,2}$", trimprefix(var.webhook_secret, "whsec_")))
      && length(trimprefix(var.webhook_secret, "whsec_")) % 4 == 0
    )
    error_message = "webhook_secret must be a Standard Webhooks secret: whsec_ followed by base64."
  }
}

# --- nightly cleanup (TIMER) ------------------------------------------------------------------

variable "cleanup_enabled" {
  description = "Turn the nightly cleanup TIMER trigger on (it is created DISABLED)."
  type        = bool
  default     = false
}

variable "cleanup_schedule" {
  description = "FunctionGraph cron: seconds minutes hours day-of-month month [day-of-week]."
  type        = string
  default     = "0 0 3 * * *"
}

variable "cleanup_user_event" {
  description = "The TIMER's user_event: a cleanup selector as JSON text. A dry run until you set dry_run to false."
  type        = string
  default     = "{\"cleanup\": {\"key_patterns\": [\"lease-*\"], \"dry_run\": true}}"

  validation {
    condition     = can(jsondecode(var.cleanup_user_event).cleanup.key_patterns)
    error_message = "cleanup_user_event must be JSON of the form {\"cleanup\": {\"key_patterns\": [...], ...}}."
  }
}

# --- webhook door (dedicated APIG gateway) ----------------------------------------------------

variable "apig_instance_id" {
  description = "Dedicated API Gateway instance id; null: no APIG trigger."
  type        = string
  default     = null
}

variable "apig_group_id" {
  description = "API group id in that gateway."
  type        = string
  default     = null
}

variable "apig_env_id" {
  description = "Environment id the API is published to."
  type        = string
  default     = null
}

variable "apig_env_name" {
  description = "Environment name the API is published to."
  type        = string
  default     = "RELEASE"
}

variable "apig_path" {
  description = "Request path of the webhook API."
  type        = string
  default     = "/ecs-metadata-janitor"
}

# --- queue door (DMS for Kafka) ---------------------------------------------------------------

variable "kafka_instance_id" {
  description = "DMS for Kafka instance id; null: no Kafka trigger."
  type        = string
  default     = null
}

variable "kafka_topic_id" {
  description = "Topic the work items arrive on."
  type        = string
  default     = null
}

variable "kafka_batch_size" {
  description = "Messages per invocation."
  type        = number
  default     = 100
}

# --- asynchronous invocations -----------------------------------------------------------------

variable "async_max_retry_attempts" {
  description = "Retries of a failed asynchronous invocation (0-3) before it goes to the failure topic."
  type        = number
  default     = 2

  validation {
    condition     = contains([0, 1, 2, 3], var.async_max_retry_attempts)
    error_message = "async_max_retry_attempts must be 0, 1, 2 or 3."
  }
}

variable "async_max_event_age_seconds" {
  description = "How long an asynchronous event may wait (1-86400 s)."
  type        = number
  default     = 3600

  validation {
    condition     = var.async_max_event_age_seconds >= 1 && var.async_max_event_age_seconds <= 86400
    error_message = "async_max_event_age_seconds must be from 1 to 86400."
  }
}
