# Both schemas are read from the same files the Python code validates and loads with, so the
# table and the code cannot drift apart. Keep those files in BigQuery's canonical form
# (name/type/mode/description): any textual difference shows up as a plan diff.

resource "google_bigquery_dataset" "ops" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest; a customer-managed key needs a KMS key ring and a BigQuery service-agent grant to operate. Add default_encryption_configuration if your policy requires CMEK.
  dataset_id                 = var.dataset_id
  project                    = var.project_id
  location                   = var.bq_location
  description                = "Amplitude events copied daily by ampbq (${var.env}), with the per-hour load ledger."
  delete_contents_on_destroy = false
  labels                     = local.labels

  depends_on = [google_project_service.this]
}

resource "google_bigquery_table" "events" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest, as for the dataset (CKV_GCP_81).
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = var.table_id
  description = "One row per Amplitude event. Each upload hour (_upload_hour) is replaced as a whole by the load function."
  schema      = file("${local.schema_dir}/all_user_events.json")
  labels      = local.labels

  # Analysts filter on event time; the load function deletes and re-inserts one upload hour,
  # which clustering on _upload_hour keeps cheap.
  time_partitioning {
    type  = "DAY"
    field = "event_time"
  }
  clustering               = ["_upload_hour", "event_type", "user_id"]
  require_partition_filter = false

  deletion_protection = var.deletion_protection
}

# The events read one row per uuid (and event_time): the query is the file the local stack's
# tables use too (ampbq.views), and a filter on event_time prunes partitions as on the table.
resource "google_bigquery_table" "events_dedup" {
  #checkov:skip=CKV_GCP_80:A view stores no data; the table it reads is covered above.
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = "${var.table_id}_dedup"
  description = "The events table with one row per uuid and event_time: of copies of one exported event, the one of the latest _upload_hour (then the later object and line)."
  labels      = local.labels

  view {
    query = templatefile("${local.schema_dir}/all_user_events_dedup.sql", {
      events_table = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
    })
    use_legacy_sql = false
  }

  deletion_protection = var.deletion_protection
}

# The query views of docs/queries.md, from the files the local stack's views use too
# (ampbq.views). None aggregates before a filter on event_time except the users view, which
# reads the whole table by design.
resource "google_bigquery_table" "events_properties" {
  #checkov:skip=CKV_GCP_80:A view stores no data; the table it reads is covered above.
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = "${var.table_id}_properties"
  description = "One row per event row, property scope (event_properties, user_properties, group_properties, data) and top-level key, with the value as JSON and as text. Filters on event_time and _upload_hour prune as on the table."
  labels      = local.labels

  view {
    query = templatefile("${local.schema_dir}/all_user_events_properties.sql", {
      events_table = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
    })
    use_legacy_sql = false
  }

  deletion_protection = var.deletion_protection
}

resource "google_bigquery_table" "events_users" {
  #checkov:skip=CKV_GCP_80:A view stores no data; the table it reads is covered above.
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = "${var.table_id}_users"
  description = "One row per amplitude_id: the latest non-null user_id, device_id and user_properties, the first and last event_time. Reads the whole events table on every query."
  labels      = local.labels

  view {
    query = templatefile("${local.schema_dir}/all_user_events_users.sql", {
      events_table = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
    })
    use_legacy_sql = false
  }

  deletion_protection = var.deletion_protection
}

resource "google_bigquery_table" "events_native" {
  #checkov:skip=CKV_GCP_80:A view stores no data; the table it reads is covered above.
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = "${var.table_id}_native"
  description = "The events table under the column names and types of Amplitude's own BigQuery export, so that queries written for that export run unchanged. Filters on event_time prune as on the table."
  labels      = local.labels

  view {
    query = templatefile("${local.schema_dir}/all_user_events_native.sql", {
      events_table = "${var.project_id}.${google_bigquery_dataset.ops.dataset_id}.${google_bigquery_table.events.table_id}"
    })
    use_legacy_sql = false
  }

  deletion_protection = var.deletion_protection
}

# The load ledger: one row per loaded upload hour, with the generations and counts behind it.
resource "google_bigquery_table" "loads" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest, as for the dataset (CKV_GCP_81).
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = "${var.table_id}_loads"
  description = "Per-hour load ledger written by the load function in the same transaction as the events."
  schema      = file("${local.schema_dir}/all_user_events_loads.json")
  labels      = local.labels

  deletion_protection = var.deletion_protection
}

# The ledger of applied user-privacy deletions (ampbq.forgetting): a row per Amplitude deletion job
# applied, and a row per (job, upload hour) with the rows removed. `ampbq forget --status` reads it.
resource "google_bigquery_table" "forgets" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest, as for the dataset (CKV_GCP_81).
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = "${var.table_id}_forgets"
  description = "Amplitude user-privacy deletion jobs applied to the events table and the bucket, with the rows removed per upload hour."
  schema      = file("${local.schema_dir}/all_user_events_forgets.json")
  labels      = local.labels

  deletion_protection = var.deletion_protection
}

# One row that every commit transaction of the load function updates first, so that BigQuery
# cancels one of any two overlapping commits even when neither deletes rows (ampbq.load.commit_lock_id).
# The load function adds the row on its first run.
resource "google_bigquery_table" "commit_lock" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest, as for the dataset (CKV_GCP_81).
  dataset_id  = google_bigquery_dataset.ops.dataset_id
  project     = var.project_id
  table_id    = "${var.table_id}_commit_lock"
  description = "One row the load function updates in each commit transaction, so that overlapping commits conflict."
  schema = jsonencode([
    { name = "holder", type = "STRING", mode = "NULLABLE", description = "The batch token of the last commit." },
    { name = "locked_at", type = "TIMESTAMP", mode = "NULLABLE", description = "When it committed." },
  ])
  labels = local.labels

  deletion_protection = var.deletion_protection
}
