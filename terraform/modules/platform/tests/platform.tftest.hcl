# `terraform test` with a mocked Nomad provider: no cluster, no API calls.
# Needs hashicorp/nomad installed by `terraform init` (tests/test_terraform.py
# skips it, saying why, when no offline mirror holds it).

mock_provider "nomad" {}

variables {
  redis_url      = "redis://redis.service.consul:6379/0"
  s3_endpoint    = "http://minio.service.consul:9000"
  vault_addr     = "http://vault.service.consul:8200"
  api_public_url = "https://abaco.example.org"
}

run "the_platform_job_gets_its_variables" {
  command = plan

  assert {
    condition     = strcontains(nomad_job.abaco.jobspec, "job \"abaco\"")
    error_message = "the abaco job comes from nomad/abaco.nomad.hcl"
  }

  assert {
    condition     = nomad_job.abaco.hcl2[0].vars["api_public_url"] == "https://abaco.example.org" && nomad_job.abaco.hcl2[0].vars["redis_url"] == "redis://redis.service.consul:6379/0"
    error_message = "the job's variables come from the module's"
  }

  assert {
    condition     = nomad_job.abaco.hcl2[0].vars["image"] == "abaco-nx:latest"
    error_message = "the default image"
  }
}

run "redis_and_minio_are_deployed_by_default" {
  command = plan

  assert {
    condition     = length(nomad_job.redis) == 1 && length(nomad_job.minio) == 1
    error_message = "Redis and MinIO run as Nomad jobs by default"
  }

  assert {
    condition     = strcontains(nomad_job.redis[0].jobspec, "abaco-redis") && strcontains(nomad_job.minio[0].jobspec, "abaco-minio")
    error_message = "Redis and MinIO keep their data on the clients' host volumes"
  }
}

run "redis_and_minio_can_be_left_out" {
  command = plan

  variables {
    deploy_redis = false
    deploy_minio = false
  }

  assert {
    condition     = length(nomad_job.redis) == 0 && length(nomad_job.minio) == 0
    error_message = "deploy_redis and deploy_minio turn the jobs off"
  }
}

run "api_public_url_must_be_a_url" {
  command = plan

  variables {
    api_public_url = "abaco.example.org"
  }

  expect_failures = [var.api_public_url]
}
