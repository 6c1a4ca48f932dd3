# Optional: an application load balancer in front of the API's static port on the
# clients. Clients that run no API allocation fail its health check and get no traffic.

resource "aws_security_group" "lb" {
  count = var.create_load_balancer ? 1 : 0

  name_prefix = "${var.name}-lb-"
  description = "Load balancer of ${var.name}'s API"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-lb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_listener" {
  for_each = var.create_load_balancer ? toset(var.api_cidr_blocks) : toset([])

  security_group_id = aws_security_group.lb[0].id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = local.listener_port
  to_port           = local.listener_port
  description       = "the platform's API"
}

resource "aws_vpc_security_group_egress_rule" "lb_to_clients" {
  count = var.create_load_balancer ? 1 : 0

  security_group_id            = aws_security_group.lb[0].id
  referenced_security_group_id = aws_security_group.clients.id
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
  description                  = "the API on the clients"
}

locals {
  https         = var.lb_certificate_arn != null
  listener_port = local.https ? 443 : 80
}

resource "aws_lb" "api" {
  count = var.create_load_balancer ? 1 : 0

  name               = "${var.name}-api"
  load_balancer_type = "application"
  internal           = false
  security_groups    = [aws_security_group.lb[0].id]
  subnets            = local.subnet_ids
  tags               = local.tags

  lifecycle {
    precondition {
      condition     = length(local.subnet_ids) >= 2
      error_message = "An application load balancer needs subnets in at least two availability zones: give two or more subnet_ids, or set create_load_balancer = false."
    }
  }
}

resource "aws_lb_target_group" "api" {
  count = var.create_load_balancer ? 1 : 0

  name     = "${var.name}-api"
  port     = var.api_port
  protocol = "HTTP"
  vpc_id   = local.vpc_id
  tags     = local.tags

  health_check {
    path    = var.health_check_path
    matcher = "200"
  }
}

resource "aws_lb_listener" "api" {
  count = var.create_load_balancer ? 1 : 0

  load_balancer_arn = aws_lb.api[0].arn
  port              = local.listener_port
  protocol          = local.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.lb_certificate_arn
  ssl_policy        = local.https ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api[0].arn
  }
}
