# What differs between installations. Set these in terraform.tfvars (see terraform.tfvars.example).

variable "project_id" {
  description = "Google Cloud project for this environment."
  type        = string
}

variable "region" {
  description = "Region of the functions, the scheduler job and the buckets."
  type        = string
  default     = "us-central1"
}

variable "bq_location" {
  description = "BigQuery location; the region must lie inside it (us-central1 in US, europe-west1 in EU)."
  type        = string
  default     = "US"
}

variable "bucket_name" {
  description = "Data bucket name; null keeps <env>-sync-amplitude-data-to-big-query-bucket. Bucket names are global: override it if that name is taken."
  type        = string
  default     = null
}

variable "amplitude_region" {
  description = "Amplitude data center: US or EU."
  type        = string
  default     = "US"
}

variable "amplitude_url" {
  description = "Optional Amplitude base URL override; empty uses the region's default."
  type        = string
  default     = ""
}

variable "notification_channels" {
  description = "Monitoring notification channel ids (projects/<p>/notificationChannels/<n>) that receive both alerts."
  type        = list(string)
  default     = []
}

variable "completeness_deadline_hour_utc" {
  description = "UTC hour by which yesterday must be fully loaded."
  type        = number
  default     = 5
}

variable "scheduler_paused" {
  description = "Create the 03:00 UTC job paused."
  type        = bool
  default     = false
}
