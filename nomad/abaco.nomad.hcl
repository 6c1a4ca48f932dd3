# The platform itself on a Nomad cluster: api and scheduler as a service job.
# Redis, S3 (MinIO) and Vault are cluster services; their addresses come from the
# variables below. Workers run inside the scheduler's allocation (LocalPlacer) and
# start actor containers on the node's Docker socket (or, with runner = "nomad",
# as batch jobs).
#
# Secrets never appear here: they live in one Nomad Variable at this job's own path,
# nomad/jobs/abaco (readable by the job's tasks with no further policy), written once:
#
#   nomad var put nomad/jobs/abaco redis_password=... s3_access_key=... \
#     s3_secret_key=... vault_token=... worker_vault_token=... \
#     actor_token_key=@actor-token.pem tenant_DEV=@DEV.pem
#
# Every allocation renders the same actor-token key (so a token minted by one API
# instance is accepted by every other) and the tenants' JWT public keys from it.

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
  description = "where actors and clients reach the API: the cluster's load balancer"
}

locals {
  # The settings both tasks share; secrets come from the variable, through templates.
  env = {
    ABACO_AUTH             = "jwt"
    ABACO_API_HOST         = "0.0.0.0"
    ABACO_API_PUBLIC_URL   = var.api_public_url
    ABACO_REDIS_URL        = var.redis_url
    ABACO_S3_ENDPOINT      = var.s3_endpoint
    ABACO_VAULT_ADDR       = var.vault_addr
    ABACO_ACTOR_TOKEN_KEY  = "/secrets/actor-token.pem"
    ABACO_TENANT_KEYS_DIR  = "/secrets/tenant-keys"
    ABACO_ACTOR_NETWORK    = "bridge"
  }
  secrets_env = <<-EOT
    {{ with nomadVar "nomad/jobs/abaco" }}
    ABACO_REDIS_PASSWORD={{ .redis_password }}
    ABACO_S3_ACCESS_KEY={{ .s3_access_key }}
    ABACO_S3_SECRET_KEY={{ .s3_secret_key }}
    ABACO_VAULT_TOKEN={{ .vault_token }}
    ABACO_WORKER_VAULT_TOKEN={{ .worker_vault_token }}
    {{ end }}
  EOT
  actor_token_key = "{{ with nomadVar \"nomad/jobs/abaco\" }}{{ .actor_token_key }}{{ end }}"
  tenant_key      = "{{ with nomadVar \"nomad/jobs/abaco\" }}{{ .tenant_DEV }}{{ end }}"
}

job "abaco" {
  type = "service"

  group "api" {
    count = 2

    network {
      port "http" {
        static = 8000
      }
    }

    task "api" {
      driver = "docker"

      config {
        image   = var.image
        ports   = ["http"]
        command = "gunicorn"
        args    = ["--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gevent", "--worker-connections", "1000", "api.app:create_app()"]
      }

      env {
        ABACO_AUTH            = "jwt"
        ABACO_API_HOST        = local.env.ABACO_API_HOST
        ABACO_API_PUBLIC_URL  = local.env.ABACO_API_PUBLIC_URL
        ABACO_REDIS_URL       = local.env.ABACO_REDIS_URL
        ABACO_S3_ENDPOINT     = local.env.ABACO_S3_ENDPOINT
        ABACO_VAULT_ADDR      = local.env.ABACO_VAULT_ADDR
        ABACO_ACTOR_TOKEN_KEY = local.env.ABACO_ACTOR_TOKEN_KEY
        ABACO_TENANT_KEYS_DIR = local.env.ABACO_TENANT_KEYS_DIR
      }

      template {
        data        = local.secrets_env
        destination = "secrets/abaco.env"
        env         = true
      }

      template {
        data        = local.actor_token_key
        destination = "secrets/actor-token.pem"
        perms       = "0600"
      }

      template {
        data        = local.tenant_key
        destination = "secrets/tenant-keys/DEV.pem"
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }

  group "scheduler" {
    # one active instance holds a Redis lock; the second waits as standby
    count = 2

    task "scheduler" {
      driver = "docker"

      config {
        image   = var.image
        command = "python"
        args    = ["-m", "scheduler"]
        volumes = ["/var/run/docker.sock:/var/run/docker.sock"]
      }

      env {
        ABACO_AUTH            = "jwt"
        ABACO_API_PUBLIC_URL  = local.env.ABACO_API_PUBLIC_URL
        ABACO_REDIS_URL       = local.env.ABACO_REDIS_URL
        ABACO_S3_ENDPOINT     = local.env.ABACO_S3_ENDPOINT
        ABACO_VAULT_ADDR      = local.env.ABACO_VAULT_ADDR
        ABACO_ACTOR_TOKEN_KEY = local.env.ABACO_ACTOR_TOKEN_KEY
        ABACO_ACTOR_NETWORK   = local.env.ABACO_ACTOR_NETWORK
      }

      template {
        data        = local.secrets_env
        destination = "secrets/abaco.env"
        env         = true
      }

      template {
        data        = local.actor_token_key
        destination = "secrets/actor-token.pem"
        perms       = "0600"
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
