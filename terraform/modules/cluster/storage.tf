# The storage client: a Nomad client outside the autoscaling group, the only node
# declaring the host volumes (var.host_volumes), so Redis and MinIO, wherever Nomad
# reschedules them, land here and find their data. It is a plain client otherwise.
# Terraform keeps it when the image or cloud-init changes (its data lives on the root
# volume); replace it deliberately, after a backup. Its root volume outlives it: after
# terraform destroy, delete the volume by hand once the data is no longer wanted.

resource "aws_instance" "storage" {
  count = var.create_storage_node ? 1 : 0

  ami                         = data.aws_ami.node.id
  instance_type               = var.storage_instance_type
  subnet_id                   = local.subnet_ids[0]
  vpc_security_group_ids      = [aws_security_group.cluster.id, aws_security_group.clients.id]
  iam_instance_profile        = aws_iam_instance_profile.node.name
  associate_public_ip_address = var.associate_public_ip_address
  key_name                    = var.key_name
  user_data                   = local.cloud_init["storage"]

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.storage_root_volume_size
    encrypted             = true
    delete_on_termination = false
  }

  tags = merge(local.tags, { Name = "${var.name}-storage", "abaco:nomad-role" = "client" })

  lifecycle {
    ignore_changes = [ami, user_data]
  }
}

resource "aws_lb_target_group_attachment" "storage" {
  count = var.create_storage_node && var.create_load_balancer ? 1 : 0

  target_group_arn = aws_lb_target_group.api[0].arn
  target_id        = aws_instance.storage[0].id
  port             = var.api_port
}
