# The Amplitude keys. Terraform creates the secrets but never their values: an operator adds
# versions with `gcloud secrets versions add`, so no key ever reaches Terraform state.
# Keyed by the environment variable the export function reads.
locals {
  amplitude_secrets = {
    AMPLITUDE_API_KEY    = var.secret_ids.api_key
    AMPLITUDE_SECRET_KEY = var.secret_ids.secret_key
  }
}

resource "google_secret_manager_secret" "amplitude" {
  for_each = local.amplitude_secrets

  secret_id = each.value
  project   = var.project_id
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

# Only the export function reads the keys.
resource "google_secret_manager_secret_iam_member" "export_reads_amplitude" {
  for_each = local.amplitude_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.amplitude[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.export.email}"
}
