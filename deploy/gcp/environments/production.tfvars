# cio-relay production: `terraform apply -var-file=environments/production.tfvars` (docs/deploy-gcp.md).
# Every environment sets the same variables; only the values differ.

project_id  = "example-cio-relay-production" # your project's id (step 1)
region      = "europe-west1"
environment = "production"

# The image to run, by digest; a rollout changes this line (docs/deploy-gcp.md, "Rolling out").
image = "europe-west1-docker.pkg.dev/example-cio-relay-production/cio-relay/cio-relay@sha256:0000000000000000000000000000000000000000000000000000000000000000"

customerio_region = "us"
bigquery_location = "EU"
subnet_cidr       = "10.30.0.0/26"

api_min_instances = 1
api_max_instances = 10
api_concurrency   = 80
api_cpu           = "1"
api_memory        = "1Gi"

worker_instances = 2
worker_cpu       = "1"
worker_memory    = "512Mi"

redis_tier      = "STANDARD_HA"
redis_memory_gb = 5

log_level           = "INFO"
deletion_protection = true
