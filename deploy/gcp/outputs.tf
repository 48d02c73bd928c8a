output "api_url" {
  description = "The API's https URL; Customer.io's reporting webhook goes to <api_url>/webhooks/customerio."
  value       = google_cloud_run_v2_service.api.uri
}

output "redis_host" {
  description = "The outbox's private address (for the outbox-url secret)."
  value       = google_redis_instance.outbox.host
}

output "redis_port" {
  description = "The outbox's TLS port (6378 with in-transit encryption)."
  value       = google_redis_instance.outbox.port
}

output "outbox_url_template" {
  description = "CIO_RELAY_OUTBOX with AUTH_STRING still to fill in (docs/deploy-gcp.md, step 5)."
  value       = "rediss://:AUTH_STRING@${google_redis_instance.outbox.host}:${google_redis_instance.outbox.port}/0?ssl_ca_certs=${local.redis_ca_dir}/${local.redis_ca_filename}&ssl_check_hostname=false"
}

output "secret_ids" {
  description = "Secret Manager secret ids, by what they hold; add a version to each (step 5)."
  value       = { for key, secret in google_secret_manager_secret.relay : key => secret.secret_id }
}

output "service_accounts" {
  description = "The service account of each role."
  value = {
    api    = google_service_account.api.email
    worker = google_service_account.worker.email
    loader = google_service_account.loader.email
  }
}

output "bigquery_table" {
  description = "The delivery-events table, as project.dataset.table."
  value       = "${var.project_id}.${google_bigquery_dataset.lake.dataset_id}.${google_bigquery_table.delivery_events.table_id}"
}
