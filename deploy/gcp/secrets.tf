# The secrets exist here; their values never do. Each service account may read only the
# secrets its runtime uses (local.api_secrets, local.worker_secrets in main.tf).

resource "google_secret_manager_secret" "relay" {
  for_each = toset(local.api_secrets)

  secret_id = "${local.name}-${each.value}"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

locals {
  secret_readers = merge(
    { for secret in local.api_secrets : "api/${secret}" => {
      secret = secret
      member = google_service_account.api.member
    } },
    { for secret in local.worker_secrets : "worker/${secret}" => {
      secret = secret
      member = google_service_account.worker.member
    } },
  )
}

resource "google_secret_manager_secret_iam_member" "readers" {
  for_each = local.secret_readers

  secret_id = google_secret_manager_secret.relay[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
