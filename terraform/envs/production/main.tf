# Production: the same pipeline as staging; only the values below differ.
module "pipeline" {
  source = "../../modules/pipeline"

  env                            = "production"
  project_id                     = var.project_id
  region                         = var.region
  bq_location                    = var.bq_location
  bucket_name                    = var.bucket_name
  amplitude_region               = var.amplitude_region
  amplitude_url                  = var.amplitude_url
  notification_channels          = var.notification_channels
  completeness_deadline_hour_utc = var.completeness_deadline_hour_utc
  scheduler_paused               = var.scheduler_paused

  # Raw backups are the replay source for a year: Nearline after a month, deleted after a year.
  export_retention_days      = 365
  export_nearline_after_days = 30
  import_retention_days      = 7
  rejects_retention_days     = 90
}
