# One service account per role, each granted only what its role reads or writes:
#   api    - cio-relay run: its secrets (below); nothing project-wide.
#   worker - cio-relay worker: the Customer.io credentials and the outbox; nothing project-wide.
#   loader - the BigQuery loader: writes the events table (bigquery.tf); no secrets.
# Cloud Run writes the containers' logs itself, so no logging role is needed.

resource "google_service_account" "api" {
  account_id   = "${local.name}-api"
  display_name = "cio-relay ${var.environment}: API service (cio-relay run)"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "worker" {
  account_id   = "${local.name}-worker"
  display_name = "cio-relay ${var.environment}: delivery workers (cio-relay worker)"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "loader" {
  account_id   = "${local.name}-loader"
  display_name = "cio-relay ${var.environment}: BigQuery loader"

  depends_on = [google_project_service.apis]
}
