# cio-relay on Google Cloud: one root module, applied once per environment with
# environments/<environment>.tfvars and its own state (environments/<environment>.gcs.tfbackend).
# Production differs from development and staging only by the values in its tfvars.

locals {
  name = "cio-relay-${var.environment}"

  # Secret Manager secrets and the environment variable each one sets. Terraform creates the
  # secrets and grants access; their values are added with gcloud (docs/deploy-gcp.md, step 5),
  # so no secret value is ever in Terraform's variables or state.
  secret_env = {
    "customerio-site-id"              = "CUSTOMERIO_SITE_ID"
    "customerio-track-api-key"        = "CUSTOMERIO_TRACK_API_KEY"
    "customerio-app-api-key"          = "CUSTOMERIO_APP_API_KEY"
    "customerio-webhook-signing-keys" = "CUSTOMERIO_WEBHOOK_SIGNING_KEY"
    "api-keys"                        = "CIO_RELAY_API_KEYS"
    # rediss://:<AUTH string>@<host>:6378/0?...: the AUTH string makes the whole URL secret.
    "outbox-url" = "CIO_RELAY_OUTBOX"
  }
  # Memorystore's server CA (PEM), mounted as a file: the outbox URL names it in ssl_ca_certs.
  redis_ca_secret   = "redis-server-ca"
  redis_ca_dir      = "/secrets/redis-ca"
  redis_ca_filename = "ca.pem"

  # What each runtime reads. The API (cio-relay run) receives requests and webhooks and also
  # delivers; the worker pool only delivers, so it never sees the API or webhook keys.
  api_secrets = concat(keys(local.secret_env), [local.redis_ca_secret])
  worker_secrets = [
    "customerio-site-id",
    "customerio-track-api-key",
    "customerio-app-api-key",
    "outbox-url",
    local.redis_ca_secret,
  ]

  # Settings shared by both runtimes (src/cio_relay/config.py names them).
  common_env = {
    CIO_RELAY_ENV       = var.environment
    CUSTOMERIO_REGION   = var.customerio_region
    CIO_RELAY_LOG_LEVEL = var.log_level
    # The image's own data directory (Dockerfile). On Cloud Run it lives in the instance's
    # memory and goes with it: the webhook inbox, the idempotency store and the Parquet lake
    # are per instance and temporary (docs/deploy-gcp.md, "What stays in an instance").
    CIO_RELAY_DATA_DIR = "/var/lib/cio-relay/data"
  }
}

# APIs the resources below need; left enabled on destroy (other tools may use them too).
resource "google_project_service" "apis" {
  for_each = toset([
    "bigquery.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ])

  service            = each.value
  disable_on_destroy = false
}
