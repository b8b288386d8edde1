# One service account per function, one for the Eventarc triggers and one for Cloud Build,
# each granted only what its job needs, on the narrowest resource that can hold the grant.
# All grants are additive (*_iam_member): the module never takes over a whole IAM policy.

resource "google_service_account" "export" {
  project      = var.project_id
  account_id   = "${var.env}-ampbq-export"
  display_name = "ampbq ${var.env} export function"
  description  = "Runs the export function: reads the Amplitude keys, writes export/ in the data bucket."
  depends_on   = [google_project_service.this]
}

resource "google_service_account" "transform" {
  project      = var.project_id
  account_id   = "${var.env}-ampbq-transform"
  display_name = "ampbq ${var.env} transform function"
  description  = "Runs the transform function: reads export/, writes import/ and rejects/."
  depends_on   = [google_project_service.this]
}

resource "google_service_account" "load" {
  project      = var.project_id
  account_id   = "${var.env}-ampbq-load"
  display_name = "ampbq ${var.env} load function"
  description  = "Runs the load function: reads import/, runs BigQuery load and query jobs."
  depends_on   = [google_project_service.this]
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "${var.env}-ampbq-trigger"
  display_name = "ampbq ${var.env} event triggers"
  description  = "Identity of the three Eventarc triggers: receives events and invokes the functions."
  depends_on   = [google_project_service.this]
}

# Since mid-2024 new projects may build functions with a default service account that lacks
# build permissions; a dedicated build identity makes the first deploy work everywhere.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.env}-ampbq-build"
  display_name = "ampbq ${var.env} function builds"
  description  = "Cloud Build identity that turns the three source zips into function images."
  depends_on   = [google_project_service.this]
}

# --- Data bucket ------------------------------------------------------------------------------
# objectUser = create, read, list, overwrite and delete objects, without access to IAM policy.
# Overwriting needs delete, so objectCreator alone could not re-drop an hour.

resource "google_storage_bucket_iam_member" "export_writes_bucket" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.export.email}"
}

# amplitude_source = "native_export": the export function reads the parts Amplitude's own
# cloud-storage export writes to its bucket (never writes there).
resource "google_storage_bucket_iam_member" "export_reads_native" {
  count  = var.amplitude_source == "native_export" ? 1 : 0
  bucket = var.native_export_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.export.email}"
}

resource "google_storage_bucket_iam_member" "transform_writes_bucket" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.transform.email}"
}

# BigQuery load jobs read gs://.../import/ with the caller's credentials.
resource "google_storage_bucket_iam_member" "load_reads_bucket" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.load.email}"
}

# A load that fails permanently records it under deadletter/ (unique names: create, never overwrite).
resource "google_storage_bucket_iam_member" "load_writes_dead_letters" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.load.email}"
}

# --- BigQuery ---------------------------------------------------------------------------------

# Running load and query jobs is a project-level permission (bigquery.jobs.create).
resource "google_project_iam_member" "load_runs_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.load.email}"
}

# Writes both tables and creates/deletes its short-lived _stage_* tables, all in this dataset.
resource "google_bigquery_dataset_iam_member" "load_edits_dataset" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.ops.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.load.email}"
}

# The export function also applies Amplitude's user-privacy deletions ({"forget": ...} messages,
# ampbq.forgetting): it queries the events table, deletes rows left without an hour object, and
# records the jobs applied in <table>_forgets.
resource "google_project_iam_member" "export_runs_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.export.email}"
}

resource "google_bigquery_dataset_iam_member" "export_edits_dataset" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.ops.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.export.email}"
}

# --- Eventarc ---------------------------------------------------------------------------------

# Direct Cloud Storage events are published by the project's Cloud Storage service agent.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_project_iam_member" "gcs_agent_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# Needed by the trigger identity of the two Cloud Storage triggers (not by the Pub/Sub one);
# the role only exists at project level.
resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}

# run.invoker on each function's own Cloud Run service, not on the project.
resource "google_cloud_run_v2_service_iam_member" "trigger_invokes" {
  for_each = {
    export    = google_cloudfunctions2_function.export.name
    transform = google_cloudfunctions2_function.transform.name
    load      = google_cloudfunctions2_function.load.name
  }

  project  = var.project_id
  location = var.region
  name     = each.value
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# --- Cloud Build ------------------------------------------------------------------------------
# The roles Google documents for a custom build service account. Object read is granted on the
# project because the build reads the source from a Google-managed staging bucket whose name
# Terraform does not control.

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectViewer",
  ])

  project = var.project_id
  role    = each.key
  member  = "serviceAccount:${google_service_account.build.email}"
}
