# A Nomad cluster on AWS: server_count servers (EC2 instances), client_count
# clients (an autoscaling group) and, with create_storage_node, one more client
# holding the host volumes of Redis and MinIO. Each is configured at boot by
# cloud-init: Docker (clients) and Nomad from HashiCorp's apt repository, then the
# agent's configuration. Servers find each other by tag (cloud auto-join), clients
# find the servers the same way.

data "aws_region" "current" {}

# --- Network: given subnets, or every subnet of a VPC (by default the default VPC)

data "aws_subnet" "first" {
  count = length(var.subnet_ids) > 0 ? 1 : 0
  id    = var.subnet_ids[0]
}

data "aws_vpc" "selected" {
  count   = length(var.subnet_ids) > 0 ? 0 : 1
  id      = var.vpc_id
  default = var.vpc_id == null ? true : null
}

data "aws_subnets" "selected" {
  count = length(var.subnet_ids) > 0 ? 0 : 1

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.selected[0].id]
  }
}

# --- Image: Canonical's Ubuntu 24.04 LTS unless ami_id is given

data "aws_ami" "node" {
  most_recent = true
  owners      = var.ami_id == null ? ["099720109477"] : null

  filter {
    name   = var.ami_id == null ? "name" : "image-id"
    values = [var.ami_id == null ? "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-${var.ami_architecture}-server-*" : var.ami_id]
  }
}

locals {
  vpc_id     = length(var.subnet_ids) > 0 ? data.aws_subnet.first[0].vpc_id : data.aws_vpc.selected[0].id
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.selected[0].ids)

  # Only servers carry this tag: both servers and clients join what it finds.
  join_tag_key = "NomadCluster"
  retry_join   = "provider=aws region=${data.aws_region.current.name} tag_key=${local.join_tag_key} tag_value=${var.name}"

  tags = merge(var.tags, { Cluster = var.name })

  # One cloud-init per kind of node: servers; clients (the autoscaling group, stateless);
  # the storage client, the only one declaring the host volumes, so Redis and MinIO
  # always come back on it with their data.
  node_kinds = {
    server  = { role = "server", node_class = "", host_volumes = tomap({}) }
    client  = { role = "client", node_class = "compute", host_volumes = tomap({}) }
    storage = { role = "client", node_class = "storage", host_volumes = var.host_volumes }
  }

  cloud_init = {
    for kind, node in local.node_kinds : kind => templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      role             = node.role
      node_class       = node.node_class
      host_volumes     = node.host_volumes
      cluster_name     = var.name
      datacenter       = var.datacenter
      bootstrap_expect = var.server_count
      retry_join       = local.retry_join
      acl_enabled      = var.acl_enabled
      nomad_version    = var.nomad_version
    })
  }
}

# --- IAM: the nodes may list instances, which is all cloud auto-join needs

resource "aws_iam_role" "node" {
  name_prefix = "${var.name}-nomad-"
  description = "Nomad nodes of ${var.name}: cloud auto-join"
  tags        = local.tags

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "auto_join" {
  name = "nomad-cloud-auto-join"
  role = aws_iam_role.node.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["ec2:DescribeInstances"]
      Resource = "*"
    }]
  })
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${var.name}-nomad-"
  role        = aws_iam_role.node.name
  tags        = local.tags
}
