# What both environment roots output (each links this file): the module's names, and cli_env.
output "bucket_name" {
  value = module.pipeline.bucket_name
}

output "topic_name" {
  value = module.pipeline.topic_name
}

output "scheduler_job_name" {
  value = module.pipeline.scheduler_job_name
}

output "function_names" {
  value = module.pipeline.function_names
}

output "function_uris" {
  value = module.pipeline.function_uris
}

output "events_table_id" {
  value = module.pipeline.events_table_id
}

output "loads_table_id" {
  value = module.pipeline.loads_table_id
}

output "secret_ids" {
  value = module.pipeline.secret_ids
}

output "service_account_emails" {
  value = module.pipeline.service_account_emails
}

output "dataset_id" {
  value = module.pipeline.dataset_id
}

output "cli_env" {
  description = "Shell lines that point the ampbq CLI at this environment: eval \"$(terraform output -raw cli_env)\"."
  value       = join("", [for name, value in module.pipeline.cli_env : "export ${name}=${value}\n"])
}
