# Amplitude -> GCS -> BigQuery pipeline for one environment:
# Cloud Scheduler -> Pub/Sub daily-runs -> export -> gs://<bucket>/export/ -> transform
# -> gs://<bucket>/import/ -> load -> BigQuery <dataset>.<table>.

locals {
  # Repository root as seen from terraform/modules/pipeline: the functions' code and the
  # BigQuery schemas live there, so Terraform deploys exactly what the tests exercise.
  repo_root  = "${path.module}/../../.."
  schema_dir = "${local.repo_root}/shared/ampbq/schema"

  # Bucket names are global, so the default data bucket name carries the project id, which no
  # other installation has: "<project_id>-<env>-amplitude". The project id is lowercased, each run
  # of characters other than letters, digits and "-" (the ":" and "." of a domain-scoped id such
  # as example.com:analytics) becomes one "-", and it is cut so the whole name stays within 59
  # characters, which leaves room for the source bucket's "-src" within Cloud Storage's 63.
  bucket_suffix      = "-${var.env}-amplitude"
  bucket_project     = trim(substr(replace(lower(var.project_id), "/[^a-z0-9-]+/", "-"), 0, 59 - length(local.bucket_suffix)), "-")
  bucket_name        = var.bucket_name != null ? var.bucket_name : "${local.bucket_project}${local.bucket_suffix}"
  bucket_location    = var.bucket_location != null ? var.bucket_location : var.region
  source_bucket_name = var.source_bucket_name != null ? var.source_bucket_name : "${trim(substr(local.bucket_name, 0, 59), "-.")}-src"

  function_names = {
    export    = "${var.env}-ampbq-export"
    transform = "${var.env}-ampbq-transform"
    load      = "${var.env}-ampbq-load"
  }

  labels = {
    app = "ampbq"
    env = var.env
  }
}

# APIs the pipeline uses. serviceusage and cloudresourcemanager must already be on for
# Terraform to manage these and the project IAM grants (see terraform/README.md, "Roles for the person who applies").
# disable_on_destroy = false: destroying this pipeline must not switch off APIs that other
# workloads in the project may use.
resource "google_project_service" "this" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])

  project            = var.project_id
  service            = each.key
  disable_on_destroy = false
}
