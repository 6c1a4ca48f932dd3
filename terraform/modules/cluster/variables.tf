variable "name" {
  type        = string
  description = "Prefix of every resource's name, and the tag value servers use to find each other (cloud auto-join)."
  default     = "abaco"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name: 1 to 20 lowercase letters, digits or hyphens, starting with a letter (it prefixes load balancer and IAM names, which AWS keeps short)."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC to use when subnet_ids is empty (all its subnets are used); null means the account's default VPC. Ignored when subnet_ids is given."
  default     = null
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets for servers, clients and the load balancer (spread across them in order); empty means every subnet of vpc_id. Instances need a route to the internet (apt repositories, image registries)."
  default     = []
}

variable "ami_id" {
  type        = string
  description = "AMI for every node; null means the newest Ubuntu 24.04 LTS from Canonical for ami_architecture. Cloud-init uses apt, so a custom AMI must be Ubuntu or Debian based."
  default     = null
}

variable "ami_architecture" {
  type        = string
  description = "CPU architecture of the default Ubuntu AMI: amd64 for x86 instance types (t3, m6i...), arm64 for Graviton ones (t4g, m7g...)."
  default     = "amd64"

  validation {
    condition     = contains(["amd64", "arm64"], var.ami_architecture)
    error_message = "ami_architecture must be amd64 or arm64."
  }
}

variable "server_count" {
  type        = number
  description = "Number of Nomad servers; odd, so that a Raft majority survives losing (server_count - 1) / 2 of them."
  default     = 3

  validation {
    condition     = var.server_count >= 1 && floor(var.server_count) == var.server_count && var.server_count % 2 == 1
    error_message = "server_count must be an odd whole number >= 1 (1, 3, 5...)."
  }
}

variable "server_instance_type" {
  type        = string
  description = "EC2 instance type of the Nomad servers."
  default     = "t3.small"
}

variable "server_root_volume_size" {
  type        = number
  description = "Root volume size of each server, in GiB."
  default     = 20

  validation {
    condition     = var.server_root_volume_size >= 8
    error_message = "server_root_volume_size must be at least 8 GiB."
  }
}

variable "client_count" {
  type        = number
  description = "Number of Nomad clients in the autoscaling group: they run the platform and the actors' containers. The API job's two instances share a static port, so they need two clients."
  default     = 2

  validation {
    condition     = var.client_count >= 1 && floor(var.client_count) == var.client_count
    error_message = "client_count must be a whole number >= 1."
  }
}

variable "client_instance_type" {
  type        = string
  description = "EC2 instance type of the Nomad clients."
  default     = "t3.large"
}

variable "client_root_volume_size" {
  type        = number
  description = "Root volume size of each client, in GiB: Docker images and the actors' containers live on it."
  default     = 50

  validation {
    condition     = var.client_root_volume_size >= 8
    error_message = "client_root_volume_size must be at least 8 GiB."
  }
}

variable "create_storage_node" {
  type        = bool
  description = "Add one client outside the autoscaling group holding host_volumes, where Redis and MinIO run (see storage.tf); false when the platform uses a managed Redis and S3."
  default     = true
}

variable "storage_instance_type" {
  type        = string
  description = "EC2 instance type of the storage client (Redis keeps its whole data set in memory)."
  default     = "t3.large"
}

variable "storage_root_volume_size" {
  type        = number
  description = "Root volume size of the storage client, in GiB: Redis' append-only file and MinIO's bucket live on it. It survives the instance's termination."
  default     = 100

  validation {
    condition     = var.storage_root_volume_size >= 8
    error_message = "storage_root_volume_size must be at least 8 GiB."
  }
}

variable "associate_public_ip_address" {
  type        = bool
  description = "Give every node a public IP (needed in public subnets without a NAT gateway; nomad_addr then uses the first server's public IP)."
  default     = true
}

variable "key_name" {
  type        = string
  description = "EC2 key pair for SSH to the nodes; null means no key and no SSH rule."
  default     = null
}

variable "admin_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks allowed to reach Nomad's HTTP API and UI (port 4646) and, with key_name, SSH. Nomad's API is plain HTTP: keep this narrow."
  default     = []

  validation {
    condition     = alltrue([for cidr in var.admin_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "admin_cidr_blocks must hold CIDR blocks such as 203.0.113.0/24."
  }
}

variable "api_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks allowed to reach the platform's API: on the load balancer's listener with create_load_balancer, otherwise on api_port of the clients."
  default     = []

  validation {
    condition     = alltrue([for cidr in var.api_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "api_cidr_blocks must hold CIDR blocks such as 0.0.0.0/0."
  }
}

variable "api_port" {
  type        = number
  description = "Static port the API job listens on, on the clients (nomad/abaco.nomad.hcl uses 8000)."
  default     = 8000

  validation {
    condition     = var.api_port >= 1 && var.api_port <= 65535
    error_message = "api_port must be a TCP port (1-65535)."
  }
}

variable "create_load_balancer" {
  type        = bool
  description = "Put an application load balancer in front of api_port on the clients; its URL is the api_url output. Needs subnets in two availability zones."
  default     = false
}

variable "lb_certificate_arn" {
  type        = string
  description = "ACM certificate for an HTTPS listener on 443; null means plain HTTP on 80."
  default     = null
}

variable "health_check_path" {
  type        = string
  description = "Path the load balancer probes on the API (unauthenticated)."
  default     = "/openapi.json"
}

variable "nomad_version" {
  type        = string
  description = "Debian package version of Nomad to install from HashiCorp's apt repository (for example 1.9.7-1); empty means the newest."
  default     = ""

  validation {
    condition     = can(regex("^[0-9A-Za-z.+~-]*$", var.nomad_version))
    error_message = "nomad_version must be a Debian version string such as 1.9.7-1, or empty."
  }
}

variable "datacenter" {
  type        = string
  description = "Nomad datacenter of every node."
  default     = "dc1"
}

variable "acl_enabled" {
  type        = bool
  description = "Enable Nomad ACLs. Afterwards run `nomad acl bootstrap` once and give the management token to the platform (NOMAD_TOKEN or the root's nomad_token)."
  default     = false
}

variable "host_volumes" {
  type        = map(string)
  description = "Nomad host volumes of the storage client (name => directory, created at boot): nomad/redis.nomad.hcl and nomad/minio.nomad.hcl mount abaco-redis and abaco-minio."
  default = {
    "abaco-redis" = "/opt/abaco/redis"
    "abaco-minio" = "/opt/abaco/minio"
  }

  validation {
    condition     = alltrue([for path in values(var.host_volumes) : startswith(path, "/")])
    error_message = "host_volumes paths must be absolute."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
