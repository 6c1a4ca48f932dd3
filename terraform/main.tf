# Deploys the platform's Nomad job (../nomad/abaco.nomad.hcl) onto an existing cluster.
terraform {
  required_version = ">= 1.5"
  required_providers {
    nomad = {
      source  = "hashicorp/nomad"
      version = ">= 2.0"
    }
  }
}

provider "nomad" {
  address = var.nomad_addr
}

resource "nomad_job" "abaco" {
  jobspec = file("${path.module}/../nomad/abaco.nomad.hcl")

  hcl2 {
    vars = {
      image          = var.image
      redis_url      = var.redis_url
      s3_endpoint    = var.s3_endpoint
      vault_addr     = var.vault_addr
      api_public_url = var.api_public_url
    }
  }
}
