resource "aws_launch_template" "client" {
  name_prefix            = "${var.name}-client-"
  description            = "Nomad clients of ${var.name}"
  image_id               = data.aws_ami.node.id
  instance_type          = var.client_instance_type
  key_name               = var.key_name
  user_data              = base64encode(local.cloud_init["client"])
  update_default_version = true

  iam_instance_profile {
    name = aws_iam_instance_profile.node.name
  }

  network_interfaces {
    associate_public_ip_address = var.associate_public_ip_address
    security_groups             = [aws_security_group.cluster.id, aws_security_group.clients.id]
    delete_on_termination       = true
  }

  block_device_mappings {
    device_name = data.aws_ami.node.root_device_name

    ebs {
      volume_type           = "gp3"
      volume_size           = var.client_root_volume_size
      encrypted             = true
      delete_on_termination = true
    }
  }

  # IMDSv2 only, one hop: Nomad (on the host) reads it, actors' containers cannot.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-client", "abaco:nomad-role" = "client" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${var.name}-client" })
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "client" {
  name_prefix         = "${var.name}-client-"
  min_size            = var.client_count
  max_size            = var.client_count
  desired_capacity    = var.client_count
  vpc_zone_identifier = local.subnet_ids
  target_group_arns   = aws_lb_target_group.api[*].arn
  health_check_type   = "EC2"

  launch_template {
    id      = aws_launch_template.client.id
    version = aws_launch_template.client.latest_version
  }

  # A new launch template version (new cloud-init, image, size) replaces clients
  # a few at a time; Nomad reschedules their allocations.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 50
    }
  }

  dynamic "tag" {
    for_each = local.tags

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }
}
