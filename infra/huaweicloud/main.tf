# ECS metadata janitor on FunctionGraph: the function, an execution agency limited to the ECS
# metadata actions it uses, a TIMER (nightly cleanup, disabled, dry run), an APIG (webhooks) and
# a DMS for Kafka (work items) trigger, and an SMN topic for failed asynchronous invocations.

locals {
  # The only ECS actions the execution agency grants. The function speaks the native v1 API
  # (ECS_API = "native" below): DELETE /v1/{project}/cloudservers/{id}/metadata/{key},
  # GET /v1/{project}/cloudservers/detail (the cleanup's listing) and
  # GET /v1/{project}/cloudservers/{id}[/metadata] (reads).
  ecs_actions = [
    "ecs:cloudServers:deleteMetadata",
    "ecs:cloudServers:list",
    "ecs:cloudServers:get",
  ]

  # Plain environment variables (user_data); every name is a field of handler.config.Config.
  environment = {
    HUAWEICLOUD_SDK_REGION     = var.region
    HUAWEICLOUD_SDK_PROJECT_ID = var.project_id
    ECS_API                    = "native"
    DRY_RUN                    = tostring(var.dry_run)
    WEBHOOK_AUTH               = "signature"
    POWERTOOLS_SERVICE_NAME    = var.function_name
  }

  # Secrets: encrypted_user_data only, never user_data. No AK/SK: with none set the function
  # uses the execution agency's temporary credentials from the context.
  secret_environment = {
    WEBHOOK_SECRET  = var.webhook_secret
    DEAD_LETTER_URL = var.dead_letter_url
  }
}

# --- execution agency: ECS metadata only ---------------------------------------------------

resource "huaweicloud_identity_role" "ecs_metadata" {
  name        = "${var.function_name}-ecs-metadata"
  description = "Delete ECS metadata keys and list/get the servers a cleanup needs."
  type        = "XA" # project-level custom policy

  policy = jsonencode({
    Version = "1.1"
    Statement = [
      {
        Effect = "Allow"
        Action = local.ecs_actions
      },
    ]
  })
}

resource "huaweicloud_identity_agency" "ecs_metadata" {
  name                   = "${var.function_name}-exec"
  description            = "FunctionGraph execution agency of ${var.function_name}: ECS metadata only."
  delegated_service_name = "op_svc_cff"

  project_role {
    project = coalesce(var.project_name, var.region)
    roles   = [huaweicloud_identity_role.ecs_metadata.name]
  }
}

# --- configuration agency: publish failed async invocations to the SMN topic ---------------

resource "huaweicloud_smn_topic" "async_failures" {
  name         = "${var.function_name}-async-failures"
  display_name = "${var.function_name} failed asynchronous invocations"
}

resource "huaweicloud_identity_role" "async_destination" {
  name        = "${var.function_name}-async-destination"
  description = "Publish failed asynchronous invocations of ${var.function_name} to SMN."
  type        = "XA"

  policy = jsonencode({
    Version = "1.1"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["smn:topic:publish"]
        Resource = ["SMN:*:*:topic:${huaweicloud_smn_topic.async_failures.name}"]
      },
    ]
  })
}

resource "huaweicloud_identity_agency" "async_destination" {
  name                   = "${var.function_name}-config"
  description            = "FunctionGraph configuration agency of ${var.function_name}: async failure topic."
  delegated_service_name = "op_svc_cff"

  project_role {
    project = coalesce(var.project_name, var.region)
    roles   = [huaweicloud_identity_role.async_destination.name]
  }
}

# --- the function -------------------------------------------------------------------------

resource "huaweicloud_fgs_function" "janitor" {
  name                  = var.function_name
  app                   = "default"
  description           = "Deletes ECS metadata pairs (ecs-metadata-janitor)."
  functiongraph_version = "v2"
  runtime               = "Python3.12"
  handler               = "index.handler"
  memory_size           = var.memory_size
  timeout               = var.timeout

  code_type     = "zip"
  code_filename = basename(var.zip_path)
  func_code     = filebase64(var.zip_path)

  # agency: the configuration agency (async destinations); app_agency: the credentials the code
  # gets from its context (ECS metadata only).
  agency     = huaweicloud_identity_agency.async_destination.name
  app_agency = huaweicloud_identity_agency.ecs_metadata.name

  user_data           = jsonencode(local.environment)
  encrypted_user_data = jsonencode(local.secret_environment)
}

resource "huaweicloud_fgs_async_invoke_configuration" "janitor" {
  function_urn                   = huaweicloud_fgs_function.janitor.urn
  max_async_event_age_in_seconds = var.async_max_event_age_seconds
  max_async_retry_attempts       = var.async_max_retry_attempts

  on_failure {
    destination = "SMN"
    param = jsonencode({
      topic_urn = huaweicloud_smn_topic.async_failures.topic_urn
    })
  }
}

# --- triggers -----------------------------------------------------------------------------

# Nightly cleanup: created DISABLED, and its selector is a dry run until you say otherwise.
resource "huaweicloud_fgs_function_trigger" "cleanup" {
  function_urn = huaweicloud_fgs_function.janitor.urn
  type         = "TIMER"
  status       = var.cleanup_enabled ? "ACTIVE" : "DISABLED"

  event_data = jsonencode({
    name          = "${var.function_name}-nightly-cleanup"
    schedule_type = "Cron"
    schedule      = var.cleanup_schedule
    user_event    = var.cleanup_user_event
  })
}

# Webhooks through a dedicated API Gateway; the function checks the Standard Webhooks signature.
resource "huaweicloud_fgs_function_trigger" "webhook" {
  count = var.apig_instance_id == null ? 0 : 1

  function_urn = huaweicloud_fgs_function.janitor.urn
  type         = "DEDICATEDGATEWAY"

  event_data = jsonencode({
    name         = replace("${var.function_name}_webhook", "-", "_")
    instance_id  = var.apig_instance_id
    group_id     = var.apig_group_id
    env_id       = var.apig_env_id
    env_name     = var.apig_env_name
    path         = var.apig_path
    req_method   = "POST"
    match_mode   = "NORMAL"
    protocol     = "HTTPS"
    auth         = "NONE"
    type         = 1
    backend_type = "FUNCTION"
    func_info    = { timeout = min(var.timeout, 60) * 1000 }
  })
}

# Work items from DMS for Kafka.
resource "huaweicloud_fgs_function_trigger" "kafka" {
  count = var.kafka_instance_id == null ? 0 : 1

  function_urn = huaweicloud_fgs_function.janitor.urn
  type         = "KAFKA"
  status       = "ACTIVE"

  event_data = jsonencode({
    instance_id = var.kafka_instance_id
    topic_ids   = [var.kafka_topic_id]
    batch_size  = var.kafka_batch_size
  })
}
