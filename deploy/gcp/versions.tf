terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.x: google_cloud_run_v2_worker_pool is generally available (no google-beta).
      version = ">= 7.0, < 8.0"
    }
  }

  # Bucket and prefix come from environments/<environment>.gcs.tfbackend at `terraform init`,
  # so each environment keeps its own state (docs/deploy-gcp.md, step 3).
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app         = "cio-relay"
    environment = var.environment
  }
}
