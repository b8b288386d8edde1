# A run starts with a message on the daily-runs topic. The body is JSON:
#   {}                                            the previous UTC day (what the daily schedule sends)
#   {"hour": "latest"}                            the newest upload hour Amplitude has complete
#                                                 (what the hourly schedule sends)
#   {"date": "2024-01-31"}                        one UTC day (backfill)
#   {"start": "20240131T00", "end": "20240131T23"} an hour range, as the Amplitude Export API takes it
resource "google_pubsub_topic" "daily_runs" {
  #checkov:skip=CKV_GCP_83:Messages carry only a date or hour range, never event data or secrets; Google-managed encryption is enough and CMEK would add a KMS key to operate.
  name    = var.topic_name
  project = var.project_id
  labels  = local.labels

  depends_on = [google_project_service.this]
}

# Amplitude makes an hour exportable about two hours after it ends (min_data_age_hours).
# daily: 03:00 UTC, when the whole previous UTC day is available.
# hourly: at minute 5 of every hour, the hour that became complete at minute 0 (so each upload
# hour is in BigQuery a little over 2 h 5 min after it ends).
# Cloud Scheduler publishes with its Google-managed service agent, whose
# roles/cloudscheduler.serviceAgent (granted on the project when the API is enabled) includes
# pubsub.topics.publish, so no extra grant is needed here.
locals {
  schedules = {
    daily  = { cron = "0 3 * * *", body = "{}", what = "the previous UTC day" }
    hourly = { cron = "5 * * * *", body = jsonencode({ hour = "latest" }), what = "the newest complete upload hour" }
  }
  schedule = local.schedules[var.schedule]
}

resource "google_cloud_scheduler_job" "daily" {
  name        = var.scheduler_job_name
  project     = var.project_id
  region      = var.region
  description = "Starts the Amplitude to BigQuery sync of ${local.schedule.what} (${var.env})."
  schedule    = local.schedule.cron
  time_zone   = "Etc/UTC"
  paused      = var.scheduler_paused

  pubsub_target {
    topic_name = google_pubsub_topic.daily_runs.id
    data       = base64encode(local.schedule.body)
  }

  depends_on = [google_project_service.this]
}

# Once a day the export function checks Amplitude's User Privacy API for deletion jobs that are
# done and applies them to the table and the bucket (ampbq.forgetting; `ampbq forget` by hand).
resource "google_cloud_scheduler_job" "forget" {
  name        = "${var.scheduler_job_name}-forget"
  project     = var.project_id
  region      = var.region
  description = "Applies the Amplitude user-privacy deletions reported done in the last 30 days (${var.env})."
  schedule    = "30 5 * * *"
  time_zone   = "Etc/UTC"
  paused      = var.scheduler_paused

  pubsub_target {
    topic_name = google_pubsub_topic.daily_runs.id
    data       = base64encode(jsonencode({ forget = "recent" }))
  }

  depends_on = [google_project_service.this]
}
