# The three Cloud Functions (2nd gen). Each zip holds the function's own files at its root
# (main.py, requirements.txt) plus the shared package's runtime files at ampbq/, next to
# main.py, so `import ampbq` works without any path tricks. Which files, exactly, is defined
# once in functions/runtime.json, read here and by `make package` (ampbq.tools.function_zips), which
# writes the same entries to dist/; no local stand-in, generator, benchmark or CLI module
# ships. All files are text, read with file().

locals {
  runtime   = jsondecode(file("${local.repo_root}/functions/runtime.json"))
  functions = toset(local.runtime.functions)
  # amplitude_projects as the code reads it (ampbq.config): "id:REGION,…"; "" for one project.
  amplitude_project_list = join(",", [for id, p in var.amplitude_projects : "${id}:${p.region}"])

  # What the code reads (ampbq.config.Config.from_env). AMPLITUDE_URL only when overridden.
  function_env = merge(
    {
      AMPBQ_BUCKET      = google_storage_bucket.data.name
      AMPBQ_PROJECT     = var.project_id
      AMPBQ_DATASET     = google_bigquery_dataset.ops.dataset_id
      AMPBQ_TABLE       = google_bigquery_table.events.table_id
      AMPBQ_BQ_LOCATION = var.bq_location
      AMPBQ_SCHEDULE    = var.schedule
      AMPLITUDE_REGION  = var.amplitude_region
      LOG_EXECUTION_ID  = "true"
      # Several Amplitude projects (docs/projects.md), "" for one: every function reads the list
      # (transform and load tell the projects apart by it), only the export function their keys.
      AMPBQ_AMPLITUDE_PROJECTS = local.amplitude_project_list
      AMPBQ_DEFAULT_PROJECT    = var.amplitude_default_project
      # A big hour's fan-out (docs/transform.md#fan-out): the export splits a part over it, the
      # transform cuts an hour object over it into units.
      AMPBQ_TRANSFORM_UNIT_BYTES = tostring(var.transform_unit_mb * 1048576)
    },
    var.amplitude_url == "" ? {} : { AMPLITUDE_URL = var.amplitude_url },
    var.amplitude_source == "export_api" ? {} : {
      AMPBQ_SOURCE               = var.amplitude_source
      AMPBQ_NATIVE_BUCKET        = var.native_export_bucket
      AMPBQ_NATIVE_PREFIX        = var.native_export_prefix
      AMPBQ_NATIVE_QUIET_SECONDS = tostring(var.native_export_quiet_minutes * 60)
    },
  )
}

data "archive_file" "function" {
  for_each = local.functions

  type        = "zip"
  output_path = "${path.module}/.build/${each.key}.zip"
  # The provider writes `source` entries sorted by name, with no timestamp and no mode (the
  # mode below applies to files it reads from disk): the same files give the same bytes, and
  # the same hash, on every machine.
  output_file_mode = "0644"

  dynamic "source" {
    for_each = local.runtime.function_files
    content {
      content  = file("${local.repo_root}/functions/${each.key}/${source.value}")
      filename = source.value
    }
  }

  dynamic "source" {
    for_each = local.runtime.shared_files
    content {
      content  = file("${local.repo_root}/shared/${source.value}")
      filename = source.value
    }
  }
}

# The zip's MD5 is in the object name: any change to the function or to ampbq gives a new
# object, and the new object name is what makes Terraform redeploy the function.
resource "google_storage_bucket_object" "function_source" {
  for_each = local.functions

  bucket       = google_storage_bucket.source.name
  name         = "functions/${each.key}-${data.archive_file.function[each.key].output_md5}.zip"
  source       = data.archive_file.function[each.key].output_path
  content_type = "application/zip"
}

# All three: retries on (a raised exception is redelivered with backoff for up to 24 h; the
# handlers raise only on transient errors), 540 s timeout (the maximum for event-driven
# functions), one event per instance, reachable only from inside Google (Eventarc push). A day
# too big for one export invocation stops itself after AMPBQ_EXPORT_BUDGET_SECONDS (300, well
# inside the 540 s) and the retry of the same event resumes it (docs/guarantees.md).

resource "google_cloudfunctions2_function" "export" {
  name        = local.function_names.export
  project     = var.project_id
  location    = var.region
  description = "Downloads one day (or hour range) from the Amplitude Export API into export/YYYY-MM-DD/HH.json.gz."
  labels      = local.labels

  build_config {
    runtime         = "python312"
    entry_point     = "export_day"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source["export"].name
      }
    }
  }

  service_config {
    available_memory = var.memory.export
    available_cpu    = var.cpu.export
    timeout_seconds  = 540
    # 10: one scheduled day plus room for a backfill of several days published at once,
    # without opening more parallel downloads than the Amplitude Export API tolerates.
    max_instance_count               = var.max_instances.export
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.export.email
    environment_variables            = local.function_env

    # AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY, and with amplitude_projects each other
    # project's AMPLITUDE_API_KEY_<id> and AMPLITUDE_SECRET_KEY_<id> (secrets.tf).
    dynamic "secret_environment_variables" {
      for_each = local.amplitude_secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = google_secret_manager_secret.amplitude[secret_environment_variables.key].secret_id
        version    = var.secret_version
      }
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.daily_runs.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
  }

  lifecycle {
    precondition {
      condition     = var.amplitude_source != "native_export" || var.native_export_bucket != ""
      error_message = "amplitude_source = \"native_export\" needs native_export_bucket: the bucket Amplitude's cloud-storage export writes to."
    }
    precondition {
      condition     = var.amplitude_default_project == "" || contains(keys(var.amplitude_projects), var.amplitude_default_project)
      error_message = "amplitude_default_project must be one of the ids in amplitude_projects."
    }
    precondition {
      condition     = length(var.amplitude_projects) == 0 || var.amplitude_source == "export_api"
      error_message = "amplitude_projects works with amplitude_source = \"export_api\"; the native export takes one project."
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.export_reads_amplitude,
    google_storage_bucket_iam_member.export_writes_bucket,
    google_storage_bucket_iam_member.export_reads_native,
  ]
}

# transform and load both trigger on every object finalized in the data bucket (direct events
# cannot filter on a prefix) and ignore, with one log line, objects outside their own prefix.
# See docs/deploy.md, "Why both functions see every object".

resource "google_cloudfunctions2_function" "transform" {
  name        = local.function_names.transform
  project     = var.project_id
  location    = var.region
  description = "Shapes export/YYYY-MM-DD/HH.json.gz into import/YYYY-MM-DD/HH.json (NDJSON) and rejects/."
  labels      = local.labels

  build_config {
    runtime         = "python312"
    entry_point     = "transform_hour"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source["transform"].name
      }
    }
  }

  service_config {
    available_memory = var.memory.transform
    available_cpu    = var.cpu.transform
    timeout_seconds  = 540
    # 24: a whole day's hours land within minutes of each other, so every hour of the day can
    # be shaped at once; more would only serve several days of backfill in parallel.
    max_instance_count               = var.max_instances.transform
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.transform.email
    environment_variables            = local.function_env
  }

  event_trigger {
    trigger_region        = lower(google_storage_bucket.data.location)
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.data.name
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_project_iam_member.gcs_agent_publishes_events,
    google_project_iam_member.trigger_receives_events,
    google_storage_bucket_iam_member.transform_writes_bucket,
  ]
}

resource "google_cloudfunctions2_function" "load" {
  name        = local.function_names.load
  project     = var.project_id
  location    = var.region
  description = "Replaces one upload hour in BigQuery from import/YYYY-MM-DD/HH.json and records it in the ledger."
  labels      = local.labels

  build_config {
    runtime         = "python312"
    entry_point     = "load_hour"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.function_source["load"].name
      }
    }
  }

  service_config {
    available_memory = var.memory.load
    available_cpu    = var.cpu.load
    timeout_seconds  = 540
    # 8: every load is a transaction on the same table, and concurrent transactions on one
    # table abort each other. The code retries those conflicts itself; 8 keeps a day's 24
    # hours moving without turning most transactions into retries.
    max_instance_count               = var.max_instances.load
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.load.email
    environment_variables            = local.function_env
  }

  event_trigger {
    trigger_region        = lower(google_storage_bucket.data.location)
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.data.name
    }
  }

  depends_on = [
    google_project_service.this,
    google_project_iam_member.build,
    google_project_iam_member.gcs_agent_publishes_events,
    google_project_iam_member.trigger_receives_events,
    google_storage_bucket_iam_member.load_reads_bucket,
    google_project_iam_member.load_runs_jobs,
    google_bigquery_dataset_iam_member.load_edits_dataset,
  ]
}
