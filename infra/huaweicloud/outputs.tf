output "function_urn" {
  description = "URN of the function."
  value       = huaweicloud_fgs_function.janitor.urn
}

output "execution_agency" {
  description = "The agency whose temporary credentials the function uses for ECS."
  value       = huaweicloud_identity_agency.ecs_metadata.name
}

output "async_failure_topic_urn" {
  description = "SMN topic receiving failed asynchronous invocations."
  value       = huaweicloud_smn_topic.async_failures.topic_urn
}
