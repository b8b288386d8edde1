# One Cloud Monitoring dashboard per environment, built from the log-based metrics in
# monitoring.tf. Every chart is a PromQL query. tests/terraform/test_alerts_and_dashboard.py
# checks that each one names only metrics of this module, and tests/integration/test_monitoring.py
# that each metric's filter matches the lines the functions really write.

locals {
  # PromQL names of the log-based metrics, on the resource the functions log from.
  promql = {
    hours_loaded    = "logging_googleapis_com:user_${local.hours_loaded_metric}"
    rows            = "logging_googleapis_com:user_${local.rows_metric}"
    rejected        = "logging_googleapis_com:user_${local.rejected_metric}"
    lag             = "logging_googleapis_com:user_${local.lag_metric}"
    bytes_billed    = "logging_googleapis_com:user_${local.bytes_billed_metric}"
    function_errors = "logging_googleapis_com:user_${local.function_errors_metric}"
    retries         = "logging_googleapis_com:user_${local.retries_metric}"
  }
  on_functions = "{monitored_resource=\"cloud_run_revision\"}"

  dashboard = {
    displayName = "ampbq ${var.env}: Amplitude to BigQuery"
    mosaicLayout = {
      columns = 48
      tiles = [
        {
          xPos   = 0
          yPos   = 0
          width  = 24
          height = 16
          widget = {
            title = "Upload hours done per date (loaded, or no data at Amplitude), last 24 h"
            xyChart = {
              dataSets = [{
                plotType       = "LINE"
                legendTemplate = "{{date}}"
                timeSeriesQuery = {
                  prometheusQuery = "count by (date) (max by (date, hour) (max_over_time(${local.promql.hours_loaded}${local.on_functions}[1d])) > 0)"
                }
              }]
              thresholds = [{ value = var.completeness_expected_hours, label = "a whole day" }]
              yAxis      = { label = "hours", scale = "LINEAR" }
            }
          }
        },
        {
          xPos   = 24
          yPos   = 0
          width  = 24
          height = 16
          widget = {
            title = "Age of the newest upload hour done (hours since it ended)"
            xyChart = {
              dataSets = [{
                plotType       = "LINE"
                legendTemplate = "newest hour"
                timeSeriesQuery = {
                  prometheusQuery = "(time() - ${local.newest_hour_end}) / 3600"
                }
              }]
              thresholds = [{ value = local.freshness_threshold_hours, label = "freshness alert" }]
              yAxis      = { label = "hours", scale = "LINEAR" }
            }
          }
        },
        {
          xPos   = 0
          yPos   = 16
          width  = 24
          height = 16
          widget = {
            title = "Rows and rejected lines committed, per hour"
            xyChart = {
              dataSets = [
                {
                  plotType           = "STACKED_BAR"
                  legendTemplate     = "rows"
                  minAlignmentPeriod = "3600s"
                  timeSeriesQuery = {
                    prometheusQuery = "sum(increase(${local.promql.rows}_sum${local.on_functions}[1h]))"
                  }
                },
                {
                  plotType           = "STACKED_BAR"
                  legendTemplate     = "rejected"
                  minAlignmentPeriod = "3600s"
                  timeSeriesQuery = {
                    prometheusQuery = "sum(increase(${local.promql.rejected}_sum${local.on_functions}[1h]))"
                  }
                },
              ]
              yAxis = { label = "lines", scale = "LINEAR" }
            }
          }
        },
        {
          xPos   = 24
          yPos   = 16
          width  = 24
          height = 16
          widget = {
            title = "Lag from the end of an upload hour to its commit (hours)"
            xyChart = {
              dataSets = [
                {
                  plotType       = "LINE"
                  legendTemplate = "median"
                  timeSeriesQuery = {
                    prometheusQuery = "histogram_quantile(0.5, sum by (le) (increase(${local.promql.lag}_bucket${local.on_functions}[1h]))) / 3600"
                  }
                },
                {
                  plotType       = "LINE"
                  legendTemplate = "99th percentile"
                  timeSeriesQuery = {
                    prometheusQuery = "histogram_quantile(0.99, sum by (le) (increase(${local.promql.lag}_bucket${local.on_functions}[1h]))) / 3600"
                  }
                },
              ]
              yAxis = { label = "hours", scale = "LINEAR" }
            }
          }
        },
        {
          xPos   = 0
          yPos   = 32
          width  = 24
          height = 16
          widget = {
            title = "Function errors and retries, per hour"
            xyChart = {
              dataSets = [
                {
                  plotType           = "STACKED_BAR"
                  legendTemplate     = "errors {{function}}"
                  minAlignmentPeriod = "3600s"
                  timeSeriesQuery = {
                    prometheusQuery = "sum by (function) (increase(${local.promql.function_errors}${local.on_functions}[1h]))"
                  }
                },
                {
                  plotType           = "STACKED_BAR"
                  legendTemplate     = "retries {{function}}"
                  minAlignmentPeriod = "3600s"
                  timeSeriesQuery = {
                    prometheusQuery = "sum by (function) (increase(${local.promql.retries}${local.on_functions}[1h]))"
                  }
                },
              ]
              yAxis = { label = "log entries", scale = "LINEAR" }
            }
          }
        },
        {
          xPos   = 24
          yPos   = 32
          width  = 24
          height = 16
          widget = {
            title = "BigQuery bytes billed for the load's commits, last 24 h"
            xyChart = {
              dataSets = [{
                plotType       = "LINE"
                legendTemplate = "bytes billed"
                timeSeriesQuery = {
                  prometheusQuery = "sum(increase(${local.promql.bytes_billed}_sum${local.on_functions}[1d]))"
                }
              }]
              yAxis = { label = "bytes", scale = "LINEAR" }
            }
          }
        },
      ]
    }
  }
}

resource "google_monitoring_dashboard" "pipeline" {
  project        = var.project_id
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [
    google_logging_metric.hours_loaded,
    google_logging_metric.loaded_hour_end,
    google_logging_metric.rows_per_hour,
    google_logging_metric.rejected_per_hour,
    google_logging_metric.load_lag,
    google_logging_metric.commit_bytes_billed,
    google_logging_metric.function_errors,
    google_logging_metric.retries,
  ]
}
