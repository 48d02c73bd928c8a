# Every environment's tfvars sets every variable below (tests/deploy/test_terraform.py checks
# it), so no environment silently inherits a value meant for another. None has a default.

variable "project_id" {
  description = "The Google Cloud project of this environment (one project per environment)."
  type        = string
}

variable "region" {
  description = "Region of Cloud Run, Memorystore and the subnet, e.g. europe-west1."
  type        = string
}

variable "environment" {
  description = "CIO_RELAY_ENV of the relay; also the suffix of every resource name."
  type        = string

  validation {
    condition     = contains(["development", "staging", "production"], var.environment)
    error_message = "environment must be development, staging or production."
  }
}

variable "image" {
  description = "The cio-relay container image, by digest: REGION-docker.pkg.dev/PROJECT/cio-relay/cio-relay@sha256:..."
  type        = string
}

variable "customerio_region" {
  description = "CUSTOMERIO_REGION: the region of the Customer.io workspace (us or eu)."
  type        = string

  validation {
    condition     = contains(["us", "eu"], var.customerio_region)
    error_message = "customerio_region must be us or eu."
  }
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset (US, EU or a region); fixed once created."
  type        = string
}

variable "subnet_cidr" {
  description = "The subnet Cloud Run's Direct VPC egress takes addresses from (a /26 or larger)."
  type        = string
}

variable "api_min_instances" {
  description = "Cloud Run instances of the API kept running (0 lets it scale to zero)."
  type        = number
}

variable "api_max_instances" {
  description = "Most Cloud Run instances of the API."
  type        = number
}

variable "api_concurrency" {
  description = "Requests one API instance serves at once (Cloud Run max_instance_request_concurrency)."
  type        = number

  # The relay refuses connections past CIO_RELAY_HTTP_MAX_CONNECTIONS (1,000) with a 503;
  # Cloud Run must never send more requests at once than the instance accepts.
  validation {
    condition     = var.api_concurrency >= 1 && var.api_concurrency <= 1000
    error_message = "api_concurrency must be 1..1000 (the relay's CIO_RELAY_HTTP_MAX_CONNECTIONS)."
  }
}

variable "api_cpu" {
  description = "vCPUs of one API instance (Cloud Run: 1, 2, 4, 6 or 8)."
  type        = string
}

variable "api_memory" {
  description = "Memory of one API instance, e.g. 1Gi (holds the webhook inbox and lake files too)."
  type        = string
}

variable "worker_instances" {
  description = "Instances of the worker pool (cio-relay worker); 1 or more."
  type        = number

  validation {
    condition     = var.worker_instances >= 1
    error_message = "worker_instances must be at least 1: without workers nothing is delivered."
  }
}

variable "worker_cpu" {
  description = "vCPUs of one worker instance (1, 2, 4, 6 or 8)."
  type        = string
}

variable "worker_memory" {
  description = "Memory of one worker instance, e.g. 512Mi."
  type        = string
}

variable "redis_tier" {
  description = "Memorystore tier: BASIC (one node) or STANDARD_HA (a replica with automatic failover)."
  type        = string

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_memory_gb" {
  description = "Memorystore capacity in GB; the outbox needs about 400 bytes per waiting operation."
  type        = number
}

variable "log_level" {
  description = "CIO_RELAY_LOG_LEVEL of every process."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse to destroy the services, the Redis outbox and the BigQuery table."
  type        = bool
}
