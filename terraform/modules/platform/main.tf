# The platform on a Nomad cluster: the jobs in the repository's nomad/ directory.
# The provider comes from the caller (terraform/main.tf points it at the cluster
# module's nomad_addr); used as a root module itself, this deploys onto an
# existing cluster named by NOMAD_ADDR (and NOMAD_TOKEN with ACLs).

locals {
  jobs_dir = "${path.module}/../../../nomad"
}

# The API and the scheduler.
resource "nomad_job" "abaco" {
  jobspec = file("${local.jobs_dir}/abaco.nomad.hcl")

  hcl2 {
    vars = {
      image          = var.image
      redis_url      = var.redis_url
      s3_endpoint    = var.s3_endpoint
      vault_addr     = var.vault_addr
      api_public_url = var.api_public_url
    }
  }

  # Registered after the stores it uses (it retries its connections anyway).
  depends_on = [nomad_job.redis, nomad_job.minio]
}

# Redis with its append-only file on the clients' "abaco-redis" host volume.
resource "nomad_job" "redis" {
  count = var.deploy_redis ? 1 : 0

  jobspec = file("${local.jobs_dir}/redis.nomad.hcl")

  hcl2 {
    vars = var.redis_job_vars
  }
}

# MinIO (the platform's S3) with its bucket on the clients' "abaco-minio" host volume.
resource "nomad_job" "minio" {
  count = var.deploy_minio ? 1 : 0

  jobspec = file("${local.jobs_dir}/minio.nomad.hcl")

  hcl2 {
    vars = var.minio_job_vars
  }
}
