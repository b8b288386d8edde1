# Staging: the same pipeline as production (../shared, which every other .tf file here links);
# only its name, its state and the retention choices below differ.
locals {
  env = "staging"

  # Staging data is a rehearsal: keep raw backups a month, in Standard storage.
  # A value set in terraform.tfvars takes the place of each of these (../shared/pipeline.tf).
  retention = {
    export_retention_days      = 30
    export_nearline_after_days = 0
    import_retention_days      = 3
    rejects_retention_days     = 30
  }
}

terraform {
  # State lives in a GCS bucket you create once (see terraform/README.md). The bucket is
  # given at init time, so this file names no project:
  #   terraform init -backend-config="bucket=<your-tfstate-bucket>"
  # Each environment keeps its own state under its own prefix; no CLI workspaces.
  backend "gcs" {
    prefix = "ampbq/staging"
  }
}
