output "nomad_addr" {
  description = "Nomad's HTTP API (NOMAD_ADDR)."
  value       = module.cluster.nomad_addr
}

output "api_url" {
  description = "The platform's API (the load balancer's URL)."
  value       = module.cluster.api_url
}

output "server_ips" {
  description = "Private IPs of the Nomad servers."
  value       = module.cluster.server_ips
}

output "redis_url" {
  description = "The platform's Redis."
  value       = local.redis_url
}

output "s3_endpoint" {
  description = "The platform's S3."
  value       = local.s3_endpoint
}

output "client_security_group_id" {
  description = "Security group of the Nomad clients."
  value       = module.cluster.client_security_group_id
}

output "job_ids" {
  description = "The Nomad jobs of the platform."
  value       = module.platform.job_ids
}
