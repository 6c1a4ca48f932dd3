# Redis for the platform on a Nomad cluster: one instance, its append-only file on the
# client host volume "abaco-redis", so a restarted or rescheduled Redis comes back with
# every actor, message and execution. Every client that may run it declares the volume
# in its agent configuration (the directory must exist):
#
#   client {
#     host_volume "abaco-redis" {
#       path      = "/srv/abaco/redis"
#       read_only = false
#     }
#   }
#
# Its password lives in a Nomad Variable at this job's own path (readable by the job's
# task with no further policy), rendered into the configuration file, never into the
# job; put the same value as redis_password at nomad/jobs/abaco:
#
#   REDIS_PASSWORD=$(openssl rand -hex 32)
#   nomad var put nomad/jobs/abaco-redis password="$REDIS_PASSWORD"
#   nomad job run nomad/redis.nomad.hcl
#
# Redis listens on the static port 6379 of the node holding the volume: the abaco
# job's redis_url is redis://<that node's address>:6379/0 (the service "abaco-redis"
# names it too: nomad service info abaco-redis).

variable "image" {
  type    = string
  default = "redis:7"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "memory" {
  type        = number
  default     = 1024
  description = "MB for Redis: the whole data set lives in memory"
}

job "abaco-redis" {
  type        = "service"
  datacenters = var.datacenters

  # A single instance: stop the old one, then start the new one on the same volume.
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "3m"
    auto_revert      = true
  }

  group "redis" {
    count = 1

    network {
      port "redis" {
        static = 6379
      }
    }

    volume "data" {
      type      = "host"
      source    = "abaco-redis"
      read_only = false
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "abaco-redis"
      provider = "nomad"
      port     = "redis"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"
      # SIGTERM: Redis flushes the append-only file before it exits.
      kill_timeout = "30s"

      config {
        image   = var.image
        ports   = ["redis"]
        command = "redis-server"
        args    = ["/secrets/redis.conf"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      # Persistence: every write goes to the append-only file (fsync each second),
      # kept in /data, the host volume. Readable by the image's redis user, which the
      # entrypoint switches to; the secrets directory is the task's own.
      template {
        destination = "secrets/redis.conf"
        change_mode = "restart"
        perms       = "0644"
        data        = <<-EOT
          bind 0.0.0.0
          port 6379
          dir /data
          appendonly yes
          appendfsync everysec
          maxclients 20000
          {{ with nomadVar "nomad/jobs/abaco-redis" }}requirepass {{ .password }}{{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = var.memory
      }
    }
  }
}
