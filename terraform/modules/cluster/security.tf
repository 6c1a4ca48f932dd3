# Two groups: "cluster" (every node; Nomad's ports and the allocations' ports between
# members, Nomad's API from admin_cidr_blocks) and "clients" (the platform's API).

resource "aws_security_group" "cluster" {
  name_prefix = "${var.name}-nomad-"
  description = "Nomad servers and clients of ${var.name}"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-nomad" })

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  cluster_internal_rules = {
    nomad_tcp = { protocol = "tcp", from = 4646, to = 4648, description = "Nomad HTTP, RPC and Serf" }
    serf_udp  = { protocol = "udp", from = 4648, to = 4648, description = "Nomad Serf gossip" }
    # Allocations reach each other on static and dynamic ports (API to Redis and MinIO...).
    workloads = { protocol = "tcp", from = 1024, to = 65535, description = "ports of Nomad allocations" }
  }
}

resource "aws_vpc_security_group_ingress_rule" "cluster_internal" {
  for_each = local.cluster_internal_rules

  security_group_id            = aws_security_group.cluster.id
  referenced_security_group_id = aws_security_group.cluster.id
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.from
  to_port                      = each.value.to
  description                  = each.value.description
}

resource "aws_vpc_security_group_ingress_rule" "nomad_api" {
  for_each = toset(var.admin_cidr_blocks)

  security_group_id = aws_security_group.cluster.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 4646
  to_port           = 4646
  description       = "Nomad HTTP API and UI"
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = var.key_name == null ? toset([]) : toset(var.admin_cidr_blocks)

  security_group_id = aws_security_group.cluster.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  description       = "SSH"
}

resource "aws_vpc_security_group_egress_rule" "cluster_all" {
  security_group_id = aws_security_group.cluster.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "apt repositories, image registries, AWS APIs"
}

resource "aws_security_group" "clients" {
  name_prefix = "${var.name}-clients-"
  description = "Nomad clients of ${var.name}: the platform's API"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-clients" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "api_from_lb" {
  count = var.create_load_balancer ? 1 : 0

  security_group_id            = aws_security_group.clients.id
  referenced_security_group_id = aws_security_group.lb[0].id
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
  description                  = "the platform's API, from the load balancer"
}

resource "aws_vpc_security_group_ingress_rule" "api_direct" {
  for_each = var.create_load_balancer ? toset([]) : toset(var.api_cidr_blocks)

  security_group_id = aws_security_group.clients.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.api_port
  to_port           = var.api_port
  description       = "the platform's API"
}
