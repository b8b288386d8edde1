# Two alerts: any ERROR from the three functions, and a day that is not complete by a deadline.
# Functions (2nd gen) log as Cloud Run revisions whose service name is the function name.

locals {
  function_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for name in values(local.function_names) : "\"${name}\""])})",
  ])

  # The load function logs exactly this message, with the LogEntry labels date (YYYY-MM-DD)
  # and hour (HH), once per hour it has committed to BigQuery.
  hour_loaded_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.function_names.load}\"",
    "jsonPayload.message=\"hour loaded\"",
  ])

  hours_loaded_metric = "ampbq_${replace(var.env, "-", "_")}_hours_loaded"

  # The scheduled run starts at 03:00 UTC (pubsub.tf). Counting from an hour before the
  # deadline hour back to the run keeps every load of the run in the window throughout the
  # deadline hour.
  run_hour_utc      = 3
  completeness_span = var.completeness_deadline_hour_utc - local.run_hour_utc + 1

  # During the deadline hour, fire unless some date has had all its hours loaded since the run.
  # "or vector(0)" makes a run that loaded nothing at all count as 0 hours instead of no data.
  completeness_query = <<-EOT
    (
      max(
        count by (date) (
          max by (date, hour) (
            max_over_time(logging_googleapis_com:user_${local.hours_loaded_metric}{monitored_resource="cloud_run_revision"}[${local.completeness_span}h])
          ) > 0
        )
      )
      or vector(0)
    ) < ${var.completeness_expected_hours}
    and on() (hour() == ${var.completeness_deadline_hour_utc})
  EOT
}

resource "google_monitoring_alert_policy" "function_errors" {
  project               = var.project_id
  display_name          = "ampbq ${var.env}: a function logged an error"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "severity>=ERROR from export, transform or load"
    condition_matched_log {
      # 429 = every instance busy (max_instances reached): Eventarc redelivers the event with
      # backoff, so it is back-pressure, not a failure. Timeouts (504) and crashes (500) do alert.
      filter = "severity>=ERROR AND ${local.function_log_filter} AND NOT httpRequest.status=429"
      label_extractors = {
        function = "EXTRACT(resource.labels.service_name)"
      }
    }
  }

  # Log-match conditions need a rate limit; one notification per 5 minutes is enough to act on.
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A pipeline function logged at ERROR or above. Transient errors are retried for up to 24 h;
      a permanent error (bad credentials, unparseable input) is logged once and acknowledged.
      Find the entries in Logs Explorer with `severity>=ERROR AND ${local.function_log_filter}`,
      fix the cause, then re-run the day (see README.md, "Deploy" / "Backfill").
    EOT
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "hours_loaded" {
  project     = var.project_id
  name        = local.hours_loaded_metric
  description = "Upload hours committed to BigQuery by the ${var.env} load function, by date and hour."
  filter      = local.hour_loaded_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "date"
      value_type  = "STRING"
      description = "Day of the loaded hour, YYYY-MM-DD (UTC)."
    }
    labels {
      key         = "hour"
      value_type  = "STRING"
      description = "Loaded hour, HH (UTC)."
    }
  }

  label_extractors = {
    date = "EXTRACT(labels.date)"
    hour = "EXTRACT(labels.hour)"
  }

  depends_on = [google_project_service.this]
}

resource "google_monitoring_alert_policy" "day_incomplete" {
  project               = var.project_id
  display_name          = "ampbq ${var.env}: yesterday not fully loaded by ${format("%02d", var.completeness_deadline_hour_utc)}:00 UTC"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "fewer than ${var.completeness_expected_hours} hours of one date loaded since the 03:00 UTC run"
    condition_prometheus_query_language {
      query               = local.completeness_query
      duration            = "0s"
      evaluation_interval = "300s"
      # The metric has no data until the first hour is loaded; validation would reject it.
      disable_metric_validation = true
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      By the deadline hour, no date has all of its ${var.completeness_expected_hours} hours logged as
      "hour loaded" by the load function since the 03:00 UTC run. Check the function-errors alert and
      the logs of export, transform and load, then re-run the day (see README.md, "Deploy" / "Backfill").
    EOT
  }

  depends_on = [google_logging_metric.hours_loaded]
}
