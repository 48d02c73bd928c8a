# cio-relay run on Cloud Run: the ingestion API, the Customer.io-compatible facades, the webhook
# route, the dashboard, /metrics, and delivery workers in the same process.

locals {
  api_port = 8080

  # The relay's own per-connection deadlines (cio_relay.http_guard), set explicitly so that
  # Cloud Run's request timeout is derived from them rather than guessed.
  http_header_timeout = 10 # CIO_RELAY_HTTP_HEADER_TIMEOUT: headers must arrive within this
  http_body_timeout   = 30 # CIO_RELAY_HTTP_BODY_TIMEOUT: longest silence while a body arrives
  outbox_timeout      = 10 # the Redis client's socket timeout (outbox/redis_connection.py)
  # The slowest request the relay itself still serves: late headers, one long pause in the
  # body, then a slow enqueue; with a margin, Cloud Run cuts off nothing the relay would finish.
  api_request_timeout = local.http_header_timeout + local.http_body_timeout + local.outbox_timeout + 10
  # Connections the relay accepts at once before answering 503 (CIO_RELAY_HTTP_MAX_CONNECTIONS);
  # var.api_concurrency is validated to stay at or below it.
  http_max_connections = 1000

  # Settings only the API reads; api_env adds them to local.common_env.
  api_only_env = {
    CIO_RELAY_HOST                 = "0.0.0.0"
    CIO_RELAY_PORT                 = tostring(local.api_port)
    CIO_RELAY_HTTP_HEADER_TIMEOUT  = tostring(local.http_header_timeout)
    CIO_RELAY_HTTP_BODY_TIMEOUT    = tostring(local.http_body_timeout)
    CIO_RELAY_HTTP_MAX_CONNECTIONS = tostring(local.http_max_connections)
    # Requests reach the container from Cloud Run's front end over link-local addresses; only
    # its X-Forwarded-For/-Proto are believed (the dashboard's login throttle needs the
    # client's address). Every Cloud Run URL is https, so the session cookie is always Secure.
    CIO_RELAY_TRUSTED_PROXIES = "169.254.0.0/16"
    CIO_RELAY_SECURE_COOKIES  = "true"
  }
  api_env = merge(local.common_env, local.api_only_env)
}

resource "google_cloud_run_v2_service" "api" {
  name                = "${local.name}-api"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.api.email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = "${local.api_request_timeout}s"
    max_instance_request_concurrency = var.api_concurrency

    scaling {
      min_instance_count = var.api_min_instances
      max_instance_count = var.api_max_instances
    }

    vpc_access {
      network_interfaces {
        network    = google_compute_network.relay.id
        subnetwork = google_compute_subnetwork.run.id
      }
      egress = "PRIVATE_RANGES_ONLY"
    }

    volumes {
      name = "redis-ca"
      secret {
        secret = google_secret_manager_secret.relay[local.redis_ca_secret].secret_id
        items {
          version = "latest"
          path    = local.redis_ca_filename
        }
      }
    }

    containers {
      image   = var.image
      command = ["cio-relay"]
      args    = ["run"]

      ports {
        container_port = local.api_port
      }

      resources {
        limits = {
          cpu    = var.api_cpu
          memory = var.api_memory
        }
        # CPU stays allocated between requests: the in-process workers lease, deliver and
        # renew their leases in the background, which a throttled CPU would stall.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.api_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = { for secret in local.api_secrets : secret => local.secret_env[secret] if contains(keys(local.secret_env), secret) }
        content {
          name = env.value
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.relay[env.key].secret_id
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = "redis-ca"
        mount_path = local.redis_ca_dir
      }

      # Traffic only once /readyz passes: the outbox answers and takes a write, the workers
      # run, Customer.io answers (server/health.py). Up to 2 minutes for a Redis still starting.
      startup_probe {
        http_get {
          path = "/readyz"
          port = local.api_port
        }
        period_seconds    = 5
        timeout_seconds   = 4
        failure_threshold = 24
      }

      # /healthz only says the process answers: a Customer.io outage must not restart us.
      liveness_probe {
        http_get {
          path = "/healthz"
          port = local.api_port
        }
        period_seconds    = 15
        timeout_seconds   = 5
        failure_threshold = 3
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.readers]
}

# Public: apps and Customer.io's webhook sender call it without Google credentials. The relay
# authenticates every route itself (API keys, webhook signatures; /healthz and /readyz say
# nothing secret).
resource "google_cloud_run_v2_service_iam_member" "public" {
  name     = google_cloud_run_v2_service.api.name
  location = google_cloud_run_v2_service.api.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}
