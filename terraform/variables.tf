variable "nomad_addr" {
  type        = string
  description = "Nomad HTTP API address"
  default     = "http://127.0.0.1:4646"
}

variable "image" {
  type    = string
  default = "abaco-nx:latest"
}

variable "redis_url" {
  type = string
}

variable "s3_endpoint" {
  type = string
}

variable "vault_addr" {
  type = string
}

variable "api_public_url" {
  type        = string
  description = "where actors and clients reach the API (the cluster's load balancer)"
}
