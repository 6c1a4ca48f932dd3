# A Nomad cluster on AWS (modules/cluster) and the platform on it (modules/platform:
# the jobs in ../nomad). On a new cluster, apply in two steps, since the nomad
# provider needs a running Nomad to plan jobs:
#
#   terraform apply -target=module.cluster   # then wait for the servers to elect a leader
#   terraform apply
#
# To deploy onto an existing cluster instead, apply modules/platform on its own
# with NOMAD_ADDR (and NOMAD_TOKEN) set.

terraform {
  required_version = ">= 1.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    nomad = {
      source  = "hashicorp/nomad"
      version = ">= 2.0"
    }
  }
}

provider "aws" {
  region = var.region
}

module "cluster" {
  source = "./modules/cluster"

  name                    = var.name
  vpc_id                  = var.vpc_id
  subnet_ids              = var.subnet_ids
  server_count            = var.server_count
  server_instance_type    = var.server_instance_type
  client_count            = var.client_count
  client_instance_type    = var.client_instance_type
  client_root_volume_size = var.client_root_volume_size
  key_name                = var.key_name
  admin_cidr_blocks       = var.admin_cidr_blocks
  api_cidr_blocks         = var.api_cidr_blocks
  create_load_balancer    = var.create_load_balancer
  lb_certificate_arn      = var.lb_certificate_arn
  nomad_version           = var.nomad_version
  acl_enabled             = var.acl_enabled
  create_storage_node     = var.deploy_redis || var.deploy_minio
  tags                    = var.tags
}

locals {
  # Redis and MinIO listen on static ports (nomad/redis.nomad.hcl, nomad/minio.nomad.hcl)
  # of the storage client, the only node with their host volumes.
  storage_ip  = module.cluster.storage_ip
  redis_url   = var.redis_url != null ? var.redis_url : (var.deploy_redis ? "redis://${local.storage_ip}:6379/0" : null)
  s3_endpoint = var.s3_endpoint != null ? var.s3_endpoint : (var.deploy_minio ? "http://${local.storage_ip}:9000" : null)
}

provider "nomad" {
  address   = var.nomad_addr != null ? var.nomad_addr : module.cluster.nomad_addr
  secret_id = var.nomad_token
}

module "platform" {
  source = "./modules/platform"

  image          = var.image
  redis_url      = local.redis_url
  s3_endpoint    = local.s3_endpoint
  vault_addr     = var.vault_addr
  api_public_url = var.api_public_url != null ? var.api_public_url : module.cluster.api_url
  deploy_redis   = var.deploy_redis
  deploy_minio   = var.deploy_minio
  redis_job_vars = var.redis_job_vars
  minio_job_vars = var.minio_job_vars
}
