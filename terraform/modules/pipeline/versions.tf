terraform {
  # strcontains() in functions.tf needs 1.5; optional() defaults in variables.tf need 1.3.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.x: tests/terraform/test_provider_schema.py checks every google_* block against the
      # schema of 7.46.1, the newest 7.x (Makefile: GOOGLE_BINDINGS_VERSION). Every argument
      # used here exists since 6.x and 7.0 removed none of them (it made event_trigger.event_type
      # required, which all three functions set), so any 7.x release works.
      version = ">= 7.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}
