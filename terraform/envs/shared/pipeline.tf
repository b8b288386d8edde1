# The pipeline of both environment roots: envs/staging and envs/production link this file. Every
# input comes from the environment's variables (set them in its terraform.tfvars) but env and the
# retention defaults, which the environment's own main.tf chooses (local.env, local.retention).
module "pipeline" {
  source = "../../modules/pipeline"

  env                               = local.env
  project_id                        = var.project_id
  region                            = var.region
  bucket_name                       = var.bucket_name
  bucket_location                   = var.bucket_location
  source_bucket_name                = var.source_bucket_name
  bq_location                       = var.bq_location
  dataset_id                        = var.dataset_id
  table_id                          = var.table_id
  deletion_protection               = var.deletion_protection
  amplitude_region                  = var.amplitude_region
  amplitude_url                     = var.amplitude_url
  amplitude_projects                = var.amplitude_projects
  amplitude_default_project         = var.amplitude_default_project
  topic_name                        = var.topic_name
  scheduler_job_name                = var.scheduler_job_name
  scheduler_paused                  = var.scheduler_paused
  secret_ids                        = var.secret_ids
  secret_version                    = var.secret_version
  memory                            = var.memory
  cpu                               = var.cpu
  max_instances                     = var.max_instances
  noncurrent_version_retention_days = var.noncurrent_version_retention_days
  notification_channels             = var.notification_channels
  completeness_deadline_hour_utc    = var.completeness_deadline_hour_utc
  completeness_expected_hours       = var.completeness_expected_hours
  freshness_threshold_hours         = var.freshness_threshold_hours
  schedule                          = var.schedule
  amplitude_source                  = var.amplitude_source
  native_export_bucket              = var.native_export_bucket
  native_export_prefix              = var.native_export_prefix
  native_export_quiet_minutes       = var.native_export_quiet_minutes
  transform_unit_mb                 = var.transform_unit_mb

  # Each environment's own choice (its main.tf); a value set in terraform.tfvars takes its place.
  export_retention_days      = coalesce(var.export_retention_days, local.retention.export_retention_days)
  export_nearline_after_days = coalesce(var.export_nearline_after_days, local.retention.export_nearline_after_days)
  import_retention_days      = coalesce(var.import_retention_days, local.retention.import_retention_days)
  rejects_retention_days     = coalesce(var.rejects_retention_days, local.retention.rejects_retention_days)
}
