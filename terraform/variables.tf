# --- AWS and the cluster (modules/cluster has the validations and more settings)

variable "region" {
  type        = string
  description = "AWS region of the cluster."
  default     = "us-east-1"
}

variable "name" {
  type        = string
  description = "Prefix of every AWS resource's name and the servers' auto-join tag value."
  default     = "abaco"
}

variable "vpc_id" {
  type        = string
  description = "VPC whose subnets the cluster uses when subnet_ids is empty; null means the default VPC."
  default     = null
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets of the nodes and the load balancer; empty means every subnet of vpc_id."
  default     = []
}

variable "server_count" {
  type        = number
  description = "Number of Nomad servers (odd)."
  default     = 3
}

variable "server_instance_type" {
  type        = string
  description = "EC2 instance type of the Nomad servers."
  default     = "t3.small"
}

variable "client_count" {
  type        = number
  description = "Number of Nomad clients, which run the platform, Redis, MinIO and the actors."
  default     = 2
}

variable "client_instance_type" {
  type        = string
  description = "EC2 instance type of the Nomad clients."
  default     = "t3.large"
}

variable "client_root_volume_size" {
  type        = number
  description = "Root volume of each client, in GiB (images, containers, host volumes)."
  default     = 50
}

variable "key_name" {
  type        = string
  description = "EC2 key pair for SSH from admin_cidr_blocks; null means none."
  default     = null
}

variable "admin_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks that reach Nomad's API (4646): at least the machine running terraform, unless nomad_addr goes another way (VPN, tunnel)."
  default     = []
}

variable "api_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks that reach the platform's API."
  default     = ["0.0.0.0/0"]
}

variable "create_load_balancer" {
  type        = bool
  description = "An application load balancer in front of the API; its URL becomes api_public_url unless that is given."
  default     = true
}

variable "lb_certificate_arn" {
  type        = string
  description = "ACM certificate for HTTPS on the load balancer; null means HTTP."
  default     = null
}

variable "nomad_version" {
  type        = string
  description = "Debian version of Nomad on the nodes (for example 1.9.7-1); empty means the newest."
  default     = ""
}

variable "acl_enabled" {
  type        = bool
  description = "Enable Nomad ACLs (then bootstrap them and pass nomad_token)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags of every AWS resource."
  default     = {}
}

# --- Nomad

variable "nomad_addr" {
  type        = string
  description = "Nomad's API for the nomad provider; null means the cluster's first server (the cluster module's nomad_addr)."
  default     = null
}

variable "nomad_token" {
  type        = string
  description = "Nomad ACL token of the nomad provider, with acl_enabled; null means NOMAD_TOKEN from the environment, or none."
  default     = null
  sensitive   = true
}

# --- The platform (modules/platform, the jobs in ../nomad)

variable "image" {
  type        = string
  description = "The platform's image; the clients pull it, so it must be in a registry they reach."
  default     = "abaco-nx:latest"
}

variable "redis_url" {
  type        = string
  description = "Redis URL of the platform; null means the Redis job on the storage client (deploy_redis)."
  default     = null
}

variable "s3_endpoint" {
  type        = string
  description = "S3 endpoint of the platform; null means the MinIO job on the storage client (deploy_minio)."
  default     = null
}

variable "vault_addr" {
  type        = string
  description = "Vault (or OpenBao) address of the actors' secrets."
}

variable "api_public_url" {
  type        = string
  description = "Where actors and clients reach the API; null means the load balancer's URL."
  default     = null
}

variable "deploy_redis" {
  type        = bool
  description = "Run Redis as a Nomad job (nomad/redis.nomad.hcl) on a storage client; false needs redis_url."
  default     = true
}

variable "deploy_minio" {
  type        = bool
  description = "Run MinIO as a Nomad job (nomad/minio.nomad.hcl) on a storage client; false needs s3_endpoint."
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
