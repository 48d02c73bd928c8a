# The delivery events in BigQuery: one row per reporting webhook, the schema generated from
# cio_relay.lake.schema (bigquery_schema.json, written by python -m cio_relay.lake.bigquery_schema;
# tests/deploy/test_terraform.py proves the committed file is current). Partitioned by DAY on
# occurred_at, like the Parquet lake's date=YYYY-MM-DD folders, so a day is replaced whole.

resource "google_bigquery_dataset" "lake" {
  dataset_id  = replace("cio_relay_${var.environment}", "-", "_")
  location    = var.bigquery_location
  description = "cio-relay delivery events (${var.environment})"
  # Deleting the dataset would delete the events with it: only where deletion is allowed.
  delete_contents_on_destroy = !var.deletion_protection

  depends_on = [google_project_service.apis]
}

resource "google_bigquery_table" "delivery_events" {
  dataset_id          = google_bigquery_dataset.lake.dataset_id
  table_id            = "delivery_events"
  description         = "One row per Customer.io reporting webhook (cio_relay.lake.schema)."
  deletion_protection = var.deletion_protection
  schema              = jsonencode(jsondecode(file("${path.module}/bigquery_schema.json")))

  time_partitioning {
    type  = "DAY"
    field = "occurred_at"
  }

  # Most questions are about one campaign or message over a few days.
  clustering = ["metric", "campaign_id", "delivery_id"]
}

# The loader's identity: it replaces days of this table (load jobs) and nothing else. No Cloud
# Run runtime loads with it yet: the loader replaces a whole day from a Parquet lake, and a
# Cloud Run instance's lake holds only that instance's events, in memory, until it stops
# (docs/deploy-gcp.md, "BigQuery"). Run `cio-relay lake export bigquery` as this account
# where one lake holds every event.
resource "google_bigquery_dataset_iam_member" "loader_writes" {
  dataset_id = google_bigquery_dataset.lake.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.loader.member
}

# Jobs (loads, the day-replace queries) run in a project; BigQuery has no narrower scope for them.
resource "google_project_iam_member" "loader_runs_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.loader.member
}
