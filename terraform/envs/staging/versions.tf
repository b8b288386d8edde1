terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }

  # State lives in a GCS bucket you create once (see terraform/README.md). The bucket is
  # given at init time, so this file names no project:
  #   terraform init -backend-config="bucket=<your-tfstate-bucket>"
  # Each environment keeps its own state under its own prefix; no CLI workspaces.
  backend "gcs" {
    prefix = "ampbq/staging"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
