# The Amplitude keys. Terraform creates the secrets but never their values: an operator adds
# versions with `gcloud secrets versions add`, so no key ever reaches Terraform state.
# Keyed by the environment variable the export function reads: AMPLITUDE_API_KEY and
# AMPLITUDE_SECRET_KEY for the one project (or, with amplitude_projects, for the default one: the
# same secrets, so an upgraded deployment keeps them), AMPLITUDE_API_KEY_<id> and
# AMPLITUDE_SECRET_KEY_<id> for every other project of amplitude_projects (docs/projects.md).
locals {
  other_amplitude_projects = { for id, p in var.amplitude_projects : id => p if id != var.amplitude_default_project }
  other_amplitude_secrets = flatten([for id, p in local.other_amplitude_projects : [
    { name = "AMPLITUDE_API_KEY_${id}", secret = coalesce(p.api_key_secret, "amplitude-${id}-api-key") },
    { name = "AMPLITUDE_SECRET_KEY_${id}", secret = coalesce(p.secret_key_secret, "amplitude-${id}-secret-key") },
  ]])
  amplitude_secrets = merge(
    length(var.amplitude_projects) == 0 || var.amplitude_default_project != "" ? {
      AMPLITUDE_API_KEY    = var.secret_ids.api_key
      AMPLITUDE_SECRET_KEY = var.secret_ids.secret_key
    } : {},
    { for s in local.other_amplitude_secrets : s.name => s.secret },
  )
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
