terraform {
  # strcontains() in functions.tf needs 1.5; optional() defaults in variables.tf need 1.3.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.13 added disable_metric_validation to google_monitoring_alert_policy (monitoring.tf).
      version = ">= 6.13, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}
