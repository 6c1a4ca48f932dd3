output "nomad_addr" {
  description = "Nomad's HTTP API on the first server (its public IP when nodes have one): NOMAD_ADDR for the CLI and the nomad provider."
  value       = "http://${var.associate_public_ip_address ? aws_instance.server[0].public_ip : aws_instance.server[0].private_ip}:4646"
}

output "server_ips" {
  description = "Private IPs of the Nomad servers."
  value       = aws_instance.server[*].private_ip
}

output "server_public_ips" {
  description = "Public IPs of the Nomad servers (empty strings without associate_public_ip_address)."
  value       = aws_instance.server[*].public_ip
}

output "storage_ip" {
  description = "Private IP of the storage client, where Redis (6379) and MinIO (9000) listen; null without create_storage_node."
  value       = var.create_storage_node ? aws_instance.storage[0].private_ip : null
}

output "api_url" {
  description = "The load balancer's URL for the platform's API (its api_public_url); null without create_load_balancer."
  value       = var.create_load_balancer ? "${local.https ? "https" : "http"}://${aws_lb.api[0].dns_name}" : null
}

output "client_security_group_id" {
  description = "Security group of the clients (the API port): add rules to it to expose more."
  value       = aws_security_group.clients.id
}

output "cluster_security_group_id" {
  description = "Security group every node is in (Nomad's ports, traffic between nodes)."
  value       = aws_security_group.cluster.id
}

output "client_autoscaling_group_name" {
  description = "The clients' autoscaling group."
  value       = aws_autoscaling_group.client.name
}

output "retry_join" {
  description = "Cloud auto-join string the nodes use, for agents added by hand."
  value       = local.retry_join
}
