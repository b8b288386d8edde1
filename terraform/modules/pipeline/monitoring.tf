# Three alerts (a function logged an error; yesterday not complete by the deadline; the newest
# loaded upload hour too old) and the log-based metrics behind them and behind the dashboard
# (dashboard.tf).
#
# Functions (2nd gen) log as Cloud Run revisions whose service name is the function name. Each
# JSON line a function writes to stdout becomes one LogEntry: the line is its jsonPayload, and
# Cloud Logging lifts "severity" into the entry's severity and "logging.googleapis.com/labels"
# into its labels. tests/monitoring_model.py evaluates these filters, label extractors and
# queries, read from this file, on the lines the functions write in the local stack
# (tests/integration/test_monitoring.py).

locals {
  # Follows the schedule unless set (variables.tf).
  freshness_threshold_hours = coalesce(var.freshness_threshold_hours, var.schedule == "hourly" ? 4 : 30)

  function_log_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${local.function_names.export}\" OR \"${local.function_names.transform}\" OR \"${local.function_names.load}\")"

  # 429 = every instance busy (max_instances reached): Eventarc redelivers the event with
  # backoff, so it is back-pressure, not a failure. Timeouts (504) and crashes (500) do count.
  error_log_filter = "severity>=ERROR AND ${local.function_log_filter} AND NOT httpRequest.status=429"

  # A transient failure: the function answers non-2xx and the platform delivers the event again.
  retry_log_filter = "${local.function_log_filter} AND jsonPayload.message:\"will be retried\""

  # One "hour loaded" line says an upload hour is done. The load function logs it for each hour
  # it has committed to BigQuery; the export function logs it for each hour Amplitude has no data
  # for (no hour object, or the empty one: nothing to transform or load). Both give the line the
  # LogEntry labels date (YYYY-MM-DD) and hour (HH), written the same way, and the field
  # hour_end_unix (when the upload hour ends). See hour_loaded_fields in shared/ampbq/monitoring.py.
  hour_loaded_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${local.function_names.export}\" OR \"${local.function_names.load}\") AND jsonPayload.message=\"hour loaded\""

  # The load's own "hour loaded" lines also carry rows, rejected and lag_seconds.
  hour_committed_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.load}\" AND jsonPayload.message=\"hour loaded\""

  # The lease holder logs one "hours committed" line per transaction, with its bytes_billed.
  commit_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.function_names.load}\" AND jsonPayload.message=\"hours committed\""

  metric_prefix          = "ampbq_${replace(var.env, "-", "_")}"
  hours_loaded_metric    = "${local.metric_prefix}_hours_loaded"
  hour_end_metric        = "${local.metric_prefix}_loaded_hour_end"
  rows_metric            = "${local.metric_prefix}_rows_per_hour"
  rejected_metric        = "${local.metric_prefix}_rejected_per_hour"
  lag_metric             = "${local.metric_prefix}_load_lag"
  bytes_billed_metric    = "${local.metric_prefix}_commit_bytes_billed"
  function_errors_metric = "${local.metric_prefix}_function_errors"
  retries_metric         = "${local.metric_prefix}_retries"

  # When each upload hour done (loaded, or found to have no data) ends, in Unix seconds: one
  # sample per distinct (date, hour) over a window of %d hours. Every value of one series is the
  # same hour_end_unix, so the largest sum over the largest count of the series is that value,
  # however the lines fall into points; an hour logged twice is still one sample.
  hour_ends = "max by (date, hour) (max_over_time(logging_googleapis_com:user_${local.hour_end_metric}_sum{monitored_resource=\"cloud_run_revision\"}[%dh])) / max by (date, hour) (max_over_time(logging_googleapis_com:user_${local.hour_end_metric}_count{monitored_resource=\"cloud_run_revision\"}[%dh]))"

  # Completeness: the distinct hours of yesterday (UTC) done, counted during the deadline hour.
  # Yesterday's hours are those whose end lies in (today 00:00 - 24 h, today 00:00]. Looking
  # back 24 h more than the deadline hour keeps in the window every hour of yesterday however it
  # was done: by the 03:00 UTC run, by runs every hour through yesterday, or by a re-run; hours
  # of other dates (a backfill) are not counted.
  completeness_span  = var.completeness_deadline_hour_utc + 24
  completeness_count = <<-EOT
    count(
      (${format(local.hour_ends, local.completeness_span, local.completeness_span)})
        > (time() - time() % 86400 - 86400)
        <= (time() - time() % 86400)
    )
  EOT

  # Fire during the deadline hour unless all of yesterday's hours are done. "or vector(0)" makes
  # a day with nothing done count as 0 hours instead of no data.
  completeness_query = <<-EOT
    (
      ${local.completeness_count}
      or vector(0)
    ) < ${var.completeness_expected_hours}
    and on() (hour() == ${var.completeness_deadline_hour_utc})
  EOT

  # Freshness: fire when the newest upload hour done ended more than the threshold ago. With
  # no line at all in the window the newest hour is older still: an hour is done after it ends,
  # so one that ended within the threshold was done within it too.
  newest_hour_end = "max(${format(local.hour_ends, local.freshness_threshold_hours, local.freshness_threshold_hours)})"
  freshness_query = <<-EOT
    time() - (
      ${local.newest_hour_end}
      or vector(0)
    ) > ${local.freshness_threshold_hours} * 3600
  EOT

  # What to run first, for every alert: the CLI against this environment (docs/operations.md,
  # "Pointing the CLI at a deployed environment"), with `ampbq status` options added by each alert.
  status_command = "AMPBQ_DATASET=${var.dataset_id} AMPBQ_TABLE=${var.table_id} AMPBQ_BQ_LOCATION=${var.bq_location} ampbq status --project ${var.project_id} --bucket ${local.bucket_name}"
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
      filter = local.error_log_filter
      label_extractors = {
        function = "EXTRACT(resource.labels.service_name)"
        date     = "EXTRACT(labels.date)"
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
    content   = local.function_errors_doc
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "hours_loaded" {
  project     = var.project_id
  name        = local.hours_loaded_metric
  description = "Upload hours done in ${var.env}, by date and hour: committed to BigQuery by the load function, or found to have no data at Amplitude by the export function."
  filter      = local.hour_loaded_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "date"
      value_type  = "STRING"
      description = "Day of the upload hour, YYYY-MM-DD (UTC)."
    }
    labels {
      key         = "hour"
      value_type  = "STRING"
      description = "Upload hour, HH (UTC)."
    }
  }

  label_extractors = {
    date = "EXTRACT(labels.date)"
    hour = "EXTRACT(labels.hour)"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "loaded_hour_end" {
  project         = var.project_id
  name            = local.hour_end_metric
  description     = "When each upload hour done in ${var.env} ends (Unix seconds), by date and hour: the freshness alert reads the newest."
  filter          = local.hour_loaded_filter
  value_extractor = "EXTRACT(jsonPayload.hour_end_unix)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
    labels {
      key         = "date"
      value_type  = "STRING"
      description = "Day of the upload hour, YYYY-MM-DD (UTC)."
    }
    labels {
      key         = "hour"
      value_type  = "STRING"
      description = "Upload hour, HH (UTC)."
    }
  }

  label_extractors = {
    date = "EXTRACT(labels.date)"
    hour = "EXTRACT(labels.hour)"
  }

  # Only the sum and the count are read (one value per series); the buckets carry nothing.
  bucket_options {
    explicit_buckets {
      bounds = [0]
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "rows_per_hour" {
  project         = var.project_id
  name            = local.rows_metric
  description     = "Rows each upload hour committed to BigQuery by the ${var.env} load function."
  filter          = local.hour_committed_filter
  value_extractor = "EXTRACT(jsonPayload.rows)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "rejected_per_hour" {
  project         = var.project_id
  name            = local.rejected_metric
  description     = "Lines of each upload hour the ${var.env} transform quarantined under rejects/, counted when the hour is committed."
  filter          = local.hour_committed_filter
  value_extractor = "EXTRACT(jsonPayload.rejected)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "load_lag" {
  project         = var.project_id
  name            = local.lag_metric
  description     = "Seconds from the end of each upload hour to its commit to BigQuery by the ${var.env} load function."
  filter          = local.hour_committed_filter
  value_extractor = "EXTRACT(jsonPayload.lag_seconds)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
  }

  # 1 minute to about 45 days.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 60
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "commit_bytes_billed" {
  project         = var.project_id
  name            = local.bytes_billed_metric
  description     = "BigQuery bytes billed for each commit transaction of the ${var.env} load function."
  filter          = local.commit_filter
  value_extractor = "EXTRACT(jsonPayload.bytes_billed)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "By"
  }

  # 1 MiB to 4 PiB.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 4
      scale              = 1048576
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "function_errors" {
  project     = var.project_id
  name        = local.function_errors_metric
  description = "Log entries at ERROR or above from the ${var.env} functions (HTTP 429 back-pressure excluded), by function: what the error alert matches."
  filter      = local.error_log_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function's Cloud Run service name."
    }
  }

  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "retries" {
  project     = var.project_id
  name        = local.retries_metric
  description = "Invocations of the ${var.env} functions that failed transiently and left the event to the platform's retry, by function."
  filter      = local.retry_log_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function's Cloud Run service name."
    }
  }

  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.this]
}

# The two alerts on the upload hours done (google_logging_metric.loaded_hour_end), both PromQL
# conditions evaluated every 5 minutes; what each one checks, and says, is here.
locals {
  hours_done_alerts = {
    day_incomplete = {
      display_name = "ampbq ${var.env}: yesterday not fully loaded by ${format("%02d", var.completeness_deadline_hour_utc)}:00 UTC"
      condition    = "fewer than ${var.completeness_expected_hours} hours of yesterday (UTC) done"
      query        = local.completeness_query
      doc          = local.day_incomplete_doc
    }
    data_stale = {
      display_name = "ampbq ${var.env}: newest loaded upload hour older than ${local.freshness_threshold_hours} h"
      condition    = "the newest upload hour done ended more than ${local.freshness_threshold_hours} h ago"
      query        = local.freshness_query
      doc          = local.data_stale_doc
    }
  }
}

resource "google_monitoring_alert_policy" "hours_done" {
  for_each = local.hours_done_alerts

  project               = var.project_id
  display_name          = each.value.display_name
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = each.value.condition
    condition_prometheus_query_language {
      query               = each.value.query
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
    content   = each.value.doc
  }

  depends_on = [google_logging_metric.loaded_hour_end]
}

# Where these two alerts were before they shared one block: the same policies, not new ones.
moved {
  from = google_monitoring_alert_policy.day_incomplete
  to   = google_monitoring_alert_policy.hours_done["day_incomplete"]
}

moved {
  from = google_monitoring_alert_policy.data_stale
  to   = google_monitoring_alert_policy.hours_done["data_stale"]
}

locals {
  function_errors_doc = <<-EOT
    A pipeline function logged at ERROR or above. Transient errors are retried for up to 24 h;
    a permanent error (bad credentials, unparseable input) is logged once and acknowledged.

    **Run first**, for the date of the failing line ($${log.extracted_label.date}; if it is
    empty, yesterday's):

    ```sh
    ${local.status_command} --date "$(date -u -d yesterday +%F)"
    ```

    Hours in `FAILED` name the reason. Find the entries in Logs Explorer with
    `${local.error_log_filter}`, fix the cause, then re-run what failed:
    `ampbq reprocess --date YYYY-MM-DD` for hours, `ampbq backfill --start YYYY-MM-DD` for the day
    (see docs/operations.md).
  EOT

  day_incomplete_doc = <<-EOT
    By ${format("%02d", var.completeness_deadline_hour_utc)}:00 UTC, fewer than ${var.completeness_expected_hours} upload hours of
    yesterday (UTC) are done: loaded by the load function, or found to have no data at Amplitude
    by the export function (both log "hour loaded").

    **Run first**, for yesterday:

    ```sh
    ${local.status_command} --date "$(date -u -d yesterday +%F)"
    ```

    It names each hour that is `MISSING`, `FAILED`, `MISMATCH` or still `pending`, and why (exit
    status 1 until every hour is `loaded` or `no data`). Check the function-errors alert and the
    logs of export, transform and load, then re-run the day with `ampbq backfill --start
    YYYY-MM-DD`, or only its hours with `ampbq reprocess --date YYYY-MM-DD` (docs/operations.md).
  EOT

  data_stale_doc = <<-EOT
    The newest upload hour the pipeline has done (loaded, or found to have no data at Amplitude)
    ended more than ${local.freshness_threshold_hours} h ago. ${var.schedule == "hourly" ? "Each hourly run loads the hour that ended about 2 h before it, so on a normal day the newest hour is a little over 2 h old: the scheduled runs stopped running or finishing." : "The 03:00 UTC run loads the previous day, whose last hour ends at 00:00 UTC, so on a normal day it is at most about 27 h old: the scheduled run did not run, or did not finish the previous day."}

    **Run first**, for the last two days:

    ```sh
    ${local.status_command} --start "$(date -u -d '2 days ago' +%F)" --end "$(date -u -d yesterday +%F)"
    ```

    Then check the Cloud Scheduler job (paused? failed?), the function-errors alert and the
    export function's logs, and run the missing days with `ampbq backfill --start YYYY-MM-DD
    --end YYYY-MM-DD` (docs/operations.md).
  EOT
}
