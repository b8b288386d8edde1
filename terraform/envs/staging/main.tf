# Staging: the same pipeline as production; only the values below differ.
module "pipeline" {
  source = "../../modules/pipeline"

  env                            = "staging"
  project_id                     = var.project_id
  region                         = var.region
  bq_location                    = var.bq_location
  bucket_name                    = var.bucket_name
  amplitude_region               = var.amplitude_region
  amplitude_url                  = var.amplitude_url
  notification_channels          = var.notification_channels
  completeness_deadline_hour_utc = var.completeness_deadline_hour_utc
  scheduler_paused               = var.scheduler_paused

  # Staging data is a rehearsal: keep raw backups a month, in Standard storage.
  export_retention_days      = 30
  export_nearline_after_days = 0
  import_retention_days      = 3
  rejects_retention_days     = 30
}
