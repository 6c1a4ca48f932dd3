variable "image" {
  type        = string
  description = "The platform's image (api and scheduler); the clients pull it, so it must be in a registry they reach."
  default     = "abaco-nx:latest"
}

variable "redis_url" {
  type        = string
  description = "Redis URL of the platform (redis://host:port/0); the password comes from the Nomad Variable nomad/jobs/abaco."

  validation {
    condition     = can(regex("^rediss?://[^/]+", var.redis_url))
    error_message = "redis_url must be a redis:// or rediss:// URL."
  }
}

variable "s3_endpoint" {
  type        = string
  description = "S3 endpoint of the platform's results and logs (MinIO's address with deploy_minio)."

  validation {
    condition     = can(regex("^https?://[^/]+", var.s3_endpoint))
    error_message = "s3_endpoint must be an http(s) URL."
  }
}

variable "vault_addr" {
  type        = string
  description = "Vault (or OpenBao) address holding the actors' secrets."
}

variable "api_public_url" {
  type        = string
  description = "Where actors and clients reach the API: the load balancer's URL."

  validation {
    condition     = can(regex("^https?://[^/]+", var.api_public_url))
    error_message = "api_public_url must be an http(s) URL, such as the cluster module's api_url output."
  }
}

variable "deploy_redis" {
  type        = bool
  description = "Run Redis as a Nomad job (nomad/redis.nomad.hcl); false when redis_url names a managed Redis."
  default     = true
}

variable "deploy_minio" {
  type        = bool
  description = "Run MinIO as a Nomad job (nomad/minio.nomad.hcl); false when s3_endpoint names another S3."
  default     = true
}

variable "redis_job_vars" {
  type        = map(string)
  description = "Values of nomad/redis.nomad.hcl's variables, as strings, like `nomad job run -var` takes them."
  default     = {}
}

variable "minio_job_vars" {
  type        = map(string)
  description = "Values of nomad/minio.nomad.hcl's variables, as strings, like `nomad job run -var` takes them."
  default     = {}
}
