# cio-relay worker as a Cloud Run worker pool: no HTTP port, CPU always allocated, a fixed
# number of instances. More instances deliver more in parallel (they share the outbox and
# Customer.io's rate limits through Redis); on SIGTERM a worker stops leasing and lets
# in-flight requests finish within its 10-second grace period, Cloud Run's own.

resource "google_cloud_run_v2_worker_pool" "worker" {
  name                = "${local.name}-worker"
  location            = var.region
  deletion_protection = var.deletion_protection

  scaling {
    scaling_mode          = "MANUAL"
    manual_instance_count = var.worker_instances
  }

  template {
    service_account = google_service_account.worker.email

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
      args    = ["worker"]

      resources {
        limits = {
          cpu    = var.worker_cpu
          memory = var.worker_memory
        }
      }

      dynamic "env" {
        for_each = local.common_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = { for secret in local.worker_secrets : secret => local.secret_env[secret] if contains(keys(local.secret_env), secret) }
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
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.readers]
}
