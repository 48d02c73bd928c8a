# A private network for the outbox: Memorystore is reachable only from it, and Cloud Run joins
# it through Direct VPC egress (no connector VMs to pay for). Only traffic to private ranges
# goes through the VPC; Customer.io's APIs are reached directly from Cloud Run.

resource "google_compute_network" "relay" {
  name                    = local.name
  auto_create_subnetworks = false

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "run" {
  name                     = "${local.name}-run"
  network                  = google_compute_network.relay.id
  region                   = var.region
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.1
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing in this network serves connections (Cloud Run only sends from it; Memorystore lives in
# Google's peered network), so all ingress is refused, explicitly and with logs, rather than by
# the implied rule alone.
resource "google_compute_firewall" "deny_ingress" {
  name      = "${local.name}-deny-ingress"
  network   = google_compute_network.relay.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
