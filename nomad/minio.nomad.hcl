# MinIO for the platform on a Nomad cluster: the S3 store of execution logs, one
# instance with its data on the client host volume "abaco-minio". Every client that
# may run it declares the volume in its agent configuration (the directory must
# exist):
#
#   client {
#     host_volume "abaco-minio" {
#       path      = "/srv/abaco/minio"
#       read_only = false
#     }
#   }
#
# The root credentials live in a Nomad Variable at this job's own path (readable by
# the job's tasks with no further policy), rendered into the tasks' environment, never
# into the job; the abaco job's s3_access_key and s3_secret_key (at nomad/jobs/abaco)
# are these, or a user's added with `mc admin user add`:
#
#   nomad var put nomad/jobs/abaco-minio root_user=abaco \
#     root_password="$(openssl rand -hex 32)"
#   nomad job run nomad/minio.nomad.hcl
#
# Once MinIO answers, the poststart task "bucket" creates the bucket the platform
# writes to (var.bucket: the s3_bucket setting's default), and does nothing when it
# exists. MinIO listens on the static port 9000 of the node holding the volume: the
# abaco job's s3_endpoint is http://<that node's address>:9000 (the service
# "abaco-minio" names it too).

variable "image" {
  type    = string
  default = "minio/minio"
}

variable "mc_image" {
  type    = string
  default = "minio/mc"
}

variable "bucket" {
  type    = string
  default = "abaco-logs"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

locals {
  credentials_env = <<-EOT
    {{ with nomadVar "nomad/jobs/abaco-minio" }}
    MINIO_ROOT_USER={{ .root_user }}
    MINIO_ROOT_PASSWORD={{ .root_password }}
    {{ end }}
  EOT
  # Waits (up to two minutes) for MinIO, then creates the bucket unless it exists.
  make_bucket = <<-EOT
    tries=0
    until mc alias set abaco "http://$NOMAD_ADDR_s3" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
      tries=$((tries + 1))
      if [ "$tries" -ge 60 ]; then echo "MinIO did not answer at $NOMAD_ADDR_s3" >&2; exit 1; fi
      sleep 2
    done
    mc mb --ignore-existing "abaco/${var.bucket}"
  EOT
}

job "abaco-minio" {
  type        = "service"
  datacenters = var.datacenters

  # A single instance: stop the old one, then start the new one on the same volume.
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "5m"
    auto_revert      = true
  }

  group "minio" {
    count = 1

    network {
      port "s3" {
        static = 9000
      }
      port "console" {
        static = 9001
      }
    }

    volume "data" {
      type      = "host"
      source    = "abaco-minio"
      read_only = false
    }

    restart {
      attempts = 10
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "abaco-minio"
      provider = "nomad"
      port     = "s3"

      check {
        type     = "http"
        path     = "/minio/health/live"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "minio" {
      driver       = "docker"
      kill_timeout = "30s"

      config {
        image = var.image
        ports = ["s3", "console"]
        args  = ["server", "/data", "--console-address", ":9001"]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      template {
        data        = local.credentials_env
        destination = "secrets/minio.env"
        env         = true
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }

    # Runs once MinIO has started; it exits when the bucket exists.
    task "bucket" {
      driver = "docker"

      lifecycle {
        hook    = "poststart"
        sidecar = false
      }

      restart {
        attempts = 3
        interval = "10m"
        delay    = "15s"
        mode     = "fail"
      }

      config {
        image      = var.mc_image
        entrypoint = ["/bin/sh", "-c"]
        args       = [local.make_bucket]
      }

      template {
        data        = local.credentials_env
        destination = "secrets/minio.env"
        env         = true
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
