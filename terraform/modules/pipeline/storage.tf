# The data bucket holds every stage of a day, by prefix:
#   export/YYYY-MM-DD/HH.json.gz   raw Amplitude backups (written by export)
#   import/YYYY-MM-DD/HH.json      NDJSON ready for BigQuery (written by transform)
#   rejects/...                    lines transform could not shape (written by transform)
# Prefixes are not created up front: a placeholder object would fire both GCS triggers and
# then be deleted by the lifecycle rules below. The code creates them on its first write.
resource "google_storage_bucket" "data" {
  #checkov:skip=CKV_GCP_62:Access logs would go to a second bucket nobody reads; Cloud Audit Logs (Data Access for storage) can be enabled project-wide instead.
  name                        = local.bucket_name
  project                     = var.project_id
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # Versioning protects the raw backups: an overwrite or delete under export/ (a re-export,
  # a wrong gsutil rm) keeps the previous generation for noncurrent_version_retention_days.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age            = var.export_retention_days
      matches_prefix = ["export/"]
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.export_nearline_after_days > 0 ? [var.export_nearline_after_days] : []
    content {
      condition {
        age                   = lifecycle_rule.value
        matches_prefix        = ["export/"]
        matches_storage_class = ["STANDARD"]
      }
      action {
        type          = "SetStorageClass"
        storage_class = "NEARLINE"
      }
    }
  }

  lifecycle_rule {
    condition {
      age            = var.import_retention_days
      matches_prefix = ["import/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = var.rejects_retention_days
      matches_prefix = ["rejects/"]
    }
    action {
      type = "Delete"
    }
  }

  # Overwritten and deleted versions (transform re-drops import/ objects on every retry).
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

# Function source zips. Object names carry the zip's MD5, so objects are never overwritten;
# versioning only guards against deletes.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only function source zips that are rebuilt from git; access logs add cost and no audit value.
  name                        = local.source_bucket_name
  project                     = var.project_id
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}
