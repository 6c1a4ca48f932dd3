# The platform itself on a Nomad cluster: api and scheduler as a service job.
# Redis, S3 (MinIO) and Vault are expected as cluster services; their addresses
# come from the variables below. Workers run inside the scheduler's allocation
# (LocalPlacer) and start actor containers on the node's Docker socket.

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
        ABACO_AUTH        = "jwt"
        ABACO_REDIS_URL   = var.redis_url
        ABACO_S3_ENDPOINT = var.s3_endpoint
        ABACO_VAULT_ADDR  = var.vault_addr
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
        ABACO_AUTH        = "jwt"
        ABACO_REDIS_URL   = var.redis_url
        ABACO_S3_ENDPOINT = var.s3_endpoint
        ABACO_VAULT_ADDR  = var.vault_addr
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
