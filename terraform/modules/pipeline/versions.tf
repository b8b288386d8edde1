terraform {
  # strcontains() in functions.tf needs 1.5; optional() defaults in variables.tf need 1.3.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 8.x: tests/terraform/test_provider_schema.py checks every google_* block against the
      # schema of 8.7.0 (Makefile: GOOGLE_BINDINGS_VERSION). 7.0 made event_trigger.event_type
      # required (all three functions set it) and removed service_config.service (not used);
      # 8.0 changed only resources this module does not use (Cloud Run worker pools, NetApp
      # storage pools, Workflows), so any 8.x release works.
      version = ">= 8.0, < 9.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}
