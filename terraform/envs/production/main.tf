# Production: the same pipeline as staging (../shared, which every other .tf file here links);
# only its name, its state and the retention choices below differ.
locals {
  env = "production"

  # Raw backups are the replay source for a year: Nearline after a month, deleted after a year.
  # A value set in terraform.tfvars takes the place of each of these (../shared/pipeline.tf).
  retention = {
    export_retention_days      = 365
    export_nearline_after_days = 30
    import_retention_days      = 7
    rejects_retention_days     = 90
  }
}

terraform {
  # State lives in a GCS bucket you create once (see terraform/README.md). The bucket is
  # given at init time, so this file names no project:
  #   terraform init -backend-config="bucket=<your-tfstate-bucket>"
  # Each environment keeps its own state under its own prefix; no CLI workspaces.
  backend "gcs" {
    prefix = "ampbq/production"
  }
}
