# Inputs of the pipeline module. Staging and production call this module with different values;
# nothing in the module switches on the environment's name.

variable "env" {
  description = "Environment name (staging or production). Prefixes function, service account and metric names."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.env))
    error_message = "env must be 2-12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "Google Cloud project that holds every resource of this environment."
  type        = string
}

variable "region" {
  description = "Region of the functions, the scheduler job and (by default) the data bucket."
  type        = string
  default     = "us-central1"
}

variable "bucket_name" {
  description = "Data bucket name. Null means \"<project_id>-<env>-amplitude\" (the project id lowercased, \":\" and \".\" turned into \"-\", cut so the name is at most 59 characters). Bucket names are global: set it if that name is taken, or if the project id begins with \"goog\", which bucket names may not."
  type        = string
  default     = null
}

variable "bucket_location" {
  description = "Data bucket location. Null means the region. It must lie inside bq_location (for example us-central1 inside US), because load jobs read the bucket."
  type        = string
  default     = null
}

variable "source_bucket_name" {
  description = "Bucket for the functions' source zips. Null means \"<bucket_name>-src\", the data bucket's name cut to 59 characters first so the result fits Cloud Storage's 63."
  type        = string
  default     = null
}

variable "bq_location" {
  description = "BigQuery dataset location (AMPBQ_BQ_LOCATION), e.g. US or EU."
  type        = string
  default     = "US"
}

variable "dataset_id" {
  description = "BigQuery dataset (AMPBQ_DATASET)."
  type        = string
  default     = "ops"
}

variable "table_id" {
  description = "Events table (AMPBQ_TABLE). The load ledger is \"<table_id>_loads\"."
  type        = string
  default     = "all_user_events"
}

variable "deletion_protection" {
  description = "Protect both BigQuery tables from terraform destroy. Set false and apply once before destroying."
  type        = bool
  default     = true
}

variable "amplitude_region" {
  description = "Amplitude data center (AMPLITUDE_REGION): US or EU."
  type        = string
  default     = "US"

  validation {
    condition     = contains(["US", "EU"], var.amplitude_region)
    error_message = "amplitude_region must be US or EU."
  }
}

variable "amplitude_projects" {
  description = "Several Amplitude projects in one deployment, keyed by Amplitude project id, each with its region (US or EU) and its own two secrets (api_key_secret and secret_key_secret, default amplitude-<id>-api-key and amplitude-<id>-secret-key; the default project's are secret_ids). All land in the one table, told apart by `app`. Empty: one project, with amplitude_region and secret_ids, as before (docs/projects.md)."
  type = map(object({
    region            = optional(string, "US")
    api_key_secret    = optional(string)
    secret_key_secret = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for id, p in var.amplitude_projects : can(regex("^[0-9]+$", id)) && contains(["US", "EU"], p.region)])
    error_message = "amplitude_projects is keyed by Amplitude project id (digits only), and each region is US or EU."
  }
}

variable "amplitude_default_project" {
  description = "With amplitude_projects: the project whose objects keep the unsegmented names (export/YYYY-MM-DD/HH.json.gz; the others get export/<id>/…), whose ledger rows have project NULL and whose keys are the secret_ids secrets. When a one-project deployment takes on more projects, set it to that project's id: nothing is renamed or loaded again. Empty: every project gets its own segment."
  type        = string
  default     = ""
}

variable "amplitude_url" {
  description = "Optional base URL override for the Amplitude Export API (AMPLITUDE_URL); empty means the region's default."
  type        = string
  default     = ""
}

variable "topic_name" {
  description = "Pub/Sub topic that starts a run. Override only if two environments share one project."
  type        = string
  default     = "daily-runs"
}

variable "scheduler_job_name" {
  description = "Cloud Scheduler job name. Override only if two environments share one project."
  type        = string
  default     = "fire-amplitude-to-big-query-sync"
}

variable "scheduler_paused" {
  description = "Create the daily job paused (for example in a staging project without real Amplitude keys)."
  type        = bool
  default     = false
}

variable "secret_ids" {
  description = "Secret Manager secret ids for the Amplitude keys. Override only if two environments share one project."
  type = object({
    api_key    = optional(string, "amplitude-api-key")
    secret_key = optional(string, "amplitude-secret-key")
  })
  default = {}
}

variable "secret_version" {
  description = "Secret version the export function reads at instance start. \"latest\" picks up a rotated key on the next cold start or deploy."
  type        = string
  default     = "latest"
}

# Sizing. Every function handles one event per instance (concurrency 1), so memory is per event.
variable "memory" {
  description = "Memory per function instance, sized for a 4 GB Amplitude day with streaming code (no step holds a whole day). /tmp is in memory and counts against it."
  type = object({
    export    = optional(string, "1Gi")
    transform = optional(string, "2Gi")
    load      = optional(string, "512Mi")
  })
  default = {}
}

variable "cpu" {
  description = "vCPUs per function instance. Transform parses JSON and needs a full vCPU or more."
  type = object({
    export    = optional(string, "1")
    transform = optional(string, "1")
    load      = optional(string, "1")
  })
  default = {}
}

variable "max_instances" {
  description = "Upper bound on concurrent instances per function (see functions.tf for why each value)."
  type = object({
    export    = optional(number, 10)
    transform = optional(number, 24)
    load      = optional(number, 8)
  })
  default = {}
}

# Lifecycle of the data bucket. Ages are in days since the object was written.
variable "export_retention_days" {
  description = "Delete raw Amplitude backups under export/ after this many days. They are the only copy from which a day can be replayed without calling Amplitude again."
  type        = number
  default     = 365

  validation {
    condition     = var.export_retention_days >= 1
    error_message = "export_retention_days must be at least 1."
  }
}

variable "export_nearline_after_days" {
  description = "Move raw backups under export/ to Nearline after this many days; 0 keeps them in Standard."
  type        = number
  default     = 30

  validation {
    condition     = var.export_nearline_after_days >= 0
    error_message = "export_nearline_after_days must be 0 or more."
  }
}

variable "import_retention_days" {
  description = "Delete intermediate NDJSON under import/ after this many days (they can be rebuilt from export/)."
  type        = number
  default     = 7

  validation {
    condition     = var.import_retention_days >= 1
    error_message = "import_retention_days must be at least 1."
  }
}

variable "rejects_retention_days" {
  description = "Delete quarantined lines under rejects/ after this many days."
  type        = number
  default     = 90

  validation {
    condition     = var.rejects_retention_days >= 1
    error_message = "rejects_retention_days must be at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Delete overwritten or deleted object versions in the data bucket after this many days."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

# Monitoring.
variable "notification_channels" {
  description = "Monitoring notification channel ids (projects/<p>/notificationChannels/<n>) for both alert policies. Empty creates the policies without notifications."
  type        = list(string)
  default     = []
}

variable "completeness_deadline_hour_utc" {
  description = "UTC hour by which the previous day's hours must all be loaded. The scheduled run starts at 03:00 UTC."
  type        = number
  default     = 5

  validation {
    condition     = var.completeness_deadline_hour_utc >= 4 && var.completeness_deadline_hour_utc <= 23
    error_message = "completeness_deadline_hour_utc must be between 4 and 23 (after the 03:00 run)."
  }
}

variable "completeness_expected_hours" {
  description = "Hours of one day that must log \"hour loaded\" before the deadline."
  type        = number
  default     = 24
}

variable "freshness_threshold_hours" {
  description = "Alert when the newest upload hour done (loaded, or found to have no data at Amplitude) ended more than this many whole hours ago. Null follows the schedule: 30 for daily (the 03:00 UTC run loads the previous day, whose last hour ends at 00:00 UTC, so it is up to about 27 h old on a normal day and 30 alerts by 06:00 UTC when a day's run has not finished), 4 for hourly (each hour is done a little over 2 h after it ends)."
  type        = number
  default     = null

  validation {
    condition     = coalesce(var.freshness_threshold_hours, 30) >= 4 && floor(coalesce(var.freshness_threshold_hours, 30)) == coalesce(var.freshness_threshold_hours, 30)
    error_message = "freshness_threshold_hours must be a whole number of hours, at least 4 (an hour is done about 2 h after it ends); with the daily run, under 28 alerts every day before the run."
  }
}

variable "schedule" {
  description = "When Cloud Scheduler starts a run: \"daily\" at 03:00 UTC, for the previous UTC day; or \"hourly\" at minute 5 of every hour, for the newest upload hour Amplitude has complete (each hour is then in BigQuery a little over 2 h after it ends). Backfills (ampbq backfill) work the same under both."
  type        = string
  default     = "daily"

  validation {
    condition     = contains(["daily", "hourly"], var.schedule)
    error_message = "schedule must be \"daily\" or \"hourly\"."
  }
}

variable "amplitude_source" {
  description = "Where the events come from: \"export_api\" (the export function downloads each range from the Amplitude Export API) or \"native_export\" (Amplitude's own cloud-storage export writes parts into native_export_bucket, and each scheduled run assembles the hours that are complete there; docs/native-export.md). Everything after export/ is the same for both."
  type        = string
  default     = "export_api"

  validation {
    condition     = contains(["export_api", "native_export"], var.amplitude_source)
    error_message = "amplitude_source must be \"export_api\" or \"native_export\"."
  }
}

variable "native_export_bucket" {
  description = "With amplitude_source = \"native_export\": the bucket Amplitude's cloud-storage export writes to (its own bucket, not the data bucket). The export function may read it (roles/storage.objectViewer)."
  type        = string
  default     = ""
}

variable "native_export_prefix" {
  description = "With amplitude_source = \"native_export\": the folder/prefix set in Amplitude for the export (\"\" for the bucket's root); parts are read from <prefix>/<project id>/."
  type        = string
  default     = ""
}

variable "native_export_quiet_minutes" {
  description = "With amplitude_source = \"native_export\": an upload hour is assembled once Amplitude has it complete and no new part of it arrived for this many minutes (no object tells that an hour is complete); a part arriving after that is taken as the hour sent again."
  type        = number
  default     = 30

  validation {
    condition     = var.native_export_quiet_minutes >= 1 && floor(var.native_export_quiet_minutes) == var.native_export_quiet_minutes
    error_message = "native_export_quiet_minutes must be a whole number of minutes, at least 1."
  }
}

variable "transform_unit_mb" {
  description = "MiB of gzip one transform invocation takes on: a bigger upload hour fans out into units of its parts, transformed in parallel and loaded together, and the export splits a bigger part at line ends (docs/transform.md#fan-out). 256 MiB is about 2.5 GB of NDJSON, some 30 s of one vCPU."
  type        = number
  default     = 256

  validation {
    condition     = var.transform_unit_mb >= 1 && floor(var.transform_unit_mb) == var.transform_unit_mb
    error_message = "transform_unit_mb must be a whole number of MiB, at least 1."
  }
}
