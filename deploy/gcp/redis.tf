# Memorystore for Redis holds the outbox (Redis Streams, cio_relay.outbox.redis), shared by the
# API's in-process workers and the worker pool. AUTH is on (the AUTH string goes into the
# outbox-url secret by hand) and traffic is encrypted (TLS on port 6378, verified against the
# instance's own CA, the redis-server-ca secret).
#
# Durability (docs/scaling.md, docs/deploy-gcp.md): Memorystore for Redis offers RDB snapshots,
# not an append-only file. STANDARD_HA replicates every write to a replica in another zone and
# fails over to it; what a failover or the loss of both nodes can still lose is in the docs.

resource "google_redis_instance" "outbox" {
  name           = local.name
  display_name   = "cio-relay ${var.environment} outbox"
  region         = var.region
  tier           = var.redis_tier
  memory_size_gb = var.redis_memory_gb
  redis_version  = "REDIS_7_2"

  authorized_network = google_compute_network.relay.id
  connect_mode       = "DIRECT_PEERING"

  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  redis_configs = {
    # Never evict: a full Redis must refuse enqueues (callers see it) rather than drop
    # waiting operations (cio_relay.outbox.redis_connection.check_persistence).
    "maxmemory-policy" = "noeviction"
  }

  persistence_config {
    persistence_mode    = "RDB"
    rdb_snapshot_period = "ONE_HOUR"
  }

  depends_on = [google_project_service.apis]
}
