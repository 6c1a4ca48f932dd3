# The platform itself on a Nomad cluster: the API (two instances behind the cluster's
# load balancer) and the scheduler (active plus standby) as one service job. Redis and
# MinIO run as their own jobs (redis.nomad.hcl, minio.nomad.hcl); Vault is the
# cluster's own Vault, reached at var.vault_addr with the tokens below.
#
# Executions run as Nomad batch jobs (runner = "nomad", the default) or as containers
# on the node's Docker engine (runner = "docker": the scheduler then mounts the node's
# Docker socket, which needs `plugin "docker" { config { volumes { enabled = true } } }`
# on the clients). Warm workers live inside the scheduler's allocation
# (placer = "local") or as Nomad jobs of their own (placer = "nomad").
#
# Secrets never appear here: they live in one Nomad Variable at this job's own path,
# nomad/jobs/abaco (readable by the job's tasks with no further policy), written once:
#
#   nomad var put nomad/jobs/abaco redis_password=... s3_access_key=... \
#     s3_secret_key=... vault_token=... worker_vault_token=... nomad_token=... \
#     actor_token_key=@actor-token.pem tenant_DEV=@DEV.pem
#
# redis_password is the one put at nomad/jobs/abaco-redis, the S3 keys the MinIO
# user's (nomad/jobs/abaco-minio). nomad_token is the Secret ID of an ACL token the
# runner and placer use (empty when the cluster runs without ACLs), of a policy like:
#
#   namespace "default" {
#     capabilities = ["submit-job", "read-job", "list-jobs", "read-logs", "scale-job",
#                     "alloc-lifecycle"]  # the Nomad placer stops and signals allocations
#     variables {
#       path "nomad/jobs/abaco-*" { capabilities = ["write", "read", "destroy"] }
#     }
#   }
#
#   nomad acl policy apply abaco-scheduler abaco-scheduler.policy.hcl
#   nomad acl token create -name abaco-scheduler -policy abaco-scheduler
#
# (executions' jobs are abaco-<execution id>: each one's environment goes to the
# variable at its own path, nomad/jobs/abaco-<execution id>).
#
# Every allocation renders the same actor-token key (so a token minted by one API
# instance is accepted by every other) and the JWT public key of each tenant named in
# var.tenants (item tenant_<TENANT> of the variable) from it.
#
#   nomad job run -var image=registry.example.org/abaco-nx:1.0 \
#     -var redis_url=redis://10.0.0.5:6379/0 -var s3_endpoint=http://10.0.0.6:9000 \
#     -var vault_addr=https://vault.example.org:8200 \
#     -var api_public_url=https://abaco.example.org nomad/abaco.nomad.hcl

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

variable "runner" {
  type        = string
  default     = "nomad"
  description = "how executions run: \"nomad\" (batch jobs) or \"docker\" (the node's engine)"
}

variable "placer" {
  type        = string
  default     = "local"
  description = "where warm workers live: \"local\" (the scheduler's allocation) or \"nomad\""
}

variable "nomad_addr" {
  type        = string
  default     = ""
  description = "Nomad's HTTP API for the runner and placer; empty: the agent of the scheduler's own node"
}

variable "nomad_datacenters" {
  type        = string
  default     = "dc1"
  description = "datacenters of executions' and workers' jobs (comma-separated)"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "tenants" {
  type        = list(string)
  default     = ["DEV"]
  description = "tenants whose JWT public key (item tenant_<TENANT> of the variable) the API renders"
}

variable "service_provider" {
  type        = string
  default     = "nomad"
  description = "where the API service is registered for the load balancer: \"nomad\" or \"consul\""
}

variable "api_tags" {
  type        = list(string)
  default     = []
  description = "tags of the API service, for the load balancer's routing (e.g. traefik.enable=true)"
}

variable "scheduler_memory" {
  type        = number
  default     = 2048
  description = "MB for the scheduler and, with placer = \"local\", its worker processes"
}

locals {
  # The settings both tasks share; secrets come from the variable, through templates.
  env = {
    ABACO_AUTH            = "jwt"
    ABACO_API_HOST        = "0.0.0.0"
    ABACO_API_PUBLIC_URL  = var.api_public_url
    ABACO_REDIS_URL       = var.redis_url
    ABACO_S3_ENDPOINT     = var.s3_endpoint
    ABACO_VAULT_ADDR      = var.vault_addr
    ABACO_ACTOR_TOKEN_KEY = "/secrets/actor-token.pem"
    ABACO_TENANT_KEYS_DIR = "/secrets/tenant-keys"
    ABACO_ACTOR_NETWORK   = "bridge"
  }
  # A Nomad task reaches the agent of its own node at the node's address (Nomad
  # interpolates ${attr.*} when it places the task).
  nomad_addr = var.nomad_addr != "" ? var.nomad_addr : "http://${attr.unique.network.ip-address}:4646"

  secrets_env = <<-EOT
    {{ with nomadVar "nomad/jobs/abaco" }}
    ABACO_REDIS_PASSWORD={{ .redis_password }}
    ABACO_S3_ACCESS_KEY={{ .s3_access_key }}
    ABACO_S3_SECRET_KEY={{ .s3_secret_key }}
    ABACO_VAULT_TOKEN={{ .vault_token }}
    ABACO_WORKER_VAULT_TOKEN={{ .worker_vault_token }}
    {{ end }}
  EOT
  # Only the scheduler (and the workers it starts) talks to Nomad.
  nomad_secrets_env = <<-EOT
    {{ with nomadVar "nomad/jobs/abaco" }}
    ABACO_NOMAD_TOKEN={{ .nomad_token }}
    {{ end }}
  EOT
  actor_token_key = "{{ with nomadVar \"nomad/jobs/abaco\" }}{{ .actor_token_key }}{{ end }}"
}

job "abaco" {
  type        = "service"
  datacenters = var.datacenters

  # One allocation at a time; a version whose API never turns healthy is rolled back.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "api" {
    count = 2

    network {
      port "http" {
        static = 8000
      }
    }

    # The static port puts each instance on its own node.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # A few restarts in place, then Nomad reschedules the allocation (on another node
    # when it can).
    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "fail"
    }

    # The load balancer in front of api_public_url routes to this service's instances.
    service {
      name     = "abaco-api"
      provider = var.service_provider
      port     = "http"
      tags     = var.api_tags

      check {
        type     = "http"
        path     = "/openapi.json"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "api" {
      driver       = "docker"
      kill_timeout = "30s"

      config {
        image   = var.image
        ports   = ["http"]
        command = "gunicorn"
        args    = ["--bind", "0.0.0.0:8000", "--workers", "4", "--worker-class", "gevent", "--worker-connections", "1000", "api.app:create_app()"]
      }

      env {
        ABACO_AUTH            = "jwt"
        # Each gunicorn worker counts requests in a file here; /metrics adds them up.
        PROMETHEUS_MULTIPROC_DIR = "/tmp/abaco-metrics"
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

      # One public key per tenant: secrets/tenant-keys/<TENANT>.pem.
      dynamic "template" {
        for_each = var.tenants
        content {
          data        = "{{ with nomadVar \"nomad/jobs/abaco\" }}{{ .tenant_${template.value} }}{{ end }}"
          destination = "secrets/tenant-keys/${template.value}.pem"
        }
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }

  group "scheduler" {
    # One active instance holds a Redis lock (scheduler/loop.py, acquire_lock); the
    # second waits as standby and takes over when the lock lapses.
    count = 2

    # The standby on another node when there is one.
    spread {
      attribute = "${node.unique.id}"
    }

    # No service to check: healthy is running.
    update {
      health_check = "task_states"
    }

    # A few restarts in place, then Nomad reschedules the allocation (on another node
    # when it can).
    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "fail"
    }

    task "scheduler" {
      driver = "docker"
      # SIGTERM lets it drain its workers (drain_timeout_s) and release the lock.
      kill_timeout = "30s"

      config {
        image   = var.image
        command = "python"
        args    = ["-m", "scheduler"]
        # The node's engine only for the Docker runner.
        volumes = var.runner == "docker" ? ["/var/run/docker.sock:/var/run/docker.sock"] : []
      }

      env {
        ABACO_AUTH               = "jwt"
        ABACO_API_PUBLIC_URL     = local.env.ABACO_API_PUBLIC_URL
        ABACO_REDIS_URL          = local.env.ABACO_REDIS_URL
        ABACO_S3_ENDPOINT        = local.env.ABACO_S3_ENDPOINT
        ABACO_VAULT_ADDR         = local.env.ABACO_VAULT_ADDR
        ABACO_ACTOR_TOKEN_KEY    = local.env.ABACO_ACTOR_TOKEN_KEY
        ABACO_ACTOR_NETWORK      = local.env.ABACO_ACTOR_NETWORK
        ABACO_RUNNER             = var.runner
        ABACO_PLACER             = var.placer
        ABACO_NOMAD_ADDR         = local.nomad_addr
        ABACO_NOMAD_DATACENTERS  = var.nomad_datacenters
        ABACO_NOMAD_RELAY_IMAGE  = var.image
        ABACO_NOMAD_WORKER_IMAGE = var.image
      }

      template {
        data        = local.secrets_env
        destination = "secrets/abaco.env"
        env         = true
      }

      template {
        data        = local.nomad_secrets_env
        destination = "secrets/nomad.env"
        env         = true
      }

      template {
        data        = local.actor_token_key
        destination = "secrets/actor-token.pem"
        perms       = "0600"
      }

      resources {
        cpu    = 500
        memory = var.scheduler_memory
      }
    }
  }
}
