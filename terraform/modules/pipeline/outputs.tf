output "bucket_name" {
  description = "Data bucket (AMPBQ_BUCKET), with the export/, import/ and rejects/ prefixes."
  value       = google_storage_bucket.data.name
}

output "source_bucket_name" {
  description = "Bucket holding the functions' source zips."
  value       = google_storage_bucket.source.name
}

output "topic_name" {
  description = "Pub/Sub topic that starts a run; publish {\"date\":\"YYYY-MM-DD\"} to it to backfill a day."
  value       = google_pubsub_topic.daily_runs.name
}

output "topic_id" {
  description = "Full id of the run topic."
  value       = google_pubsub_topic.daily_runs.id
}

output "scheduler_job_name" {
  description = "Cloud Scheduler job that publishes {} at 03:00 UTC."
  value       = google_cloud_scheduler_job.daily.name
}

output "function_names" {
  description = "Function (and Cloud Run service) names, by step."
  value = {
    export    = google_cloudfunctions2_function.export.name
    transform = google_cloudfunctions2_function.transform.name
    load      = google_cloudfunctions2_function.load.name
  }
}

output "function_uris" {
  description = "Cloud Run URIs of the functions (internal ingress only; for logs and the console)."
  value = {
    export    = google_cloudfunctions2_function.export.service_config[0].uri
    transform = google_cloudfunctions2_function.transform.service_config[0].uri
    load      = google_cloudfunctions2_function.load.service_config[0].uri
  }
}

output "dataset_id" {
  description = "BigQuery dataset (AMPBQ_DATASET)."
  value       = google_bigquery_dataset.ops.dataset_id
}

output "events_table_id" {
  description = "Events table as project.dataset.table."
  value       = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
}

output "loads_table_id" {
  description = "Load ledger table as project.dataset.table."
  value       = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.loads.table_id}"
}

output "secret_ids" {
  description = "Secret Manager secrets to add versions to, by the environment variable they feed."
  value       = { for key, secret in google_secret_manager_secret.amplitude : key => secret.secret_id }
}

output "service_account_emails" {
  description = "Service accounts, by role in the pipeline."
  value = {
    export    = google_service_account.export.email
    transform = google_service_account.transform.email
    load      = google_service_account.load.email
    trigger   = google_service_account.trigger.email
    build     = google_service_account.build.email
  }
}

output "hours_loaded_metric" {
  description = "Log-based metric counting the hours done (committed by the load, or found to have no data by the export), by date and hour."
  value       = "logging.googleapis.com/user/${google_logging_metric.hours_loaded.name}"
}

output "cli_env" {
  description = "What the ampbq CLI needs in its environment to work on this installation, by variable name (docs/operations.md, \"Pointing the CLI at a deployed environment\")."
  value = {
    AMPBQ_PROJECT            = var.project_id
    AMPBQ_BUCKET             = google_storage_bucket.data.name
    AMPBQ_DATASET            = google_bigquery_dataset.ops.dataset_id
    AMPBQ_TABLE              = google_bigquery_table.events.table_id
    AMPBQ_BQ_LOCATION        = var.bq_location
    AMPBQ_SCHEDULE           = var.schedule
    AMPBQ_AMPLITUDE_PROJECTS = local.amplitude_project_list
    AMPBQ_DEFAULT_PROJECT    = var.amplitude_default_project
    AMPBQ_RUNS_TOPIC         = google_pubsub_topic.daily_runs.name
  }
}
