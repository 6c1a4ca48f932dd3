resource "aws_instance" "server" {
  count = var.server_count

  ami                         = data.aws_ami.node.id
  instance_type               = var.server_instance_type
  subnet_id                   = element(local.subnet_ids, count.index)
  vpc_security_group_ids      = [aws_security_group.cluster.id]
  iam_instance_profile        = aws_iam_instance_profile.node.name
  associate_public_ip_address = var.associate_public_ip_address
  key_name                    = var.key_name
  user_data                   = local.cloud_init["server"]

  # IMDSv2 only, one hop: Nomad (on the host) reads it, containers cannot.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.server_root_volume_size
    encrypted   = true
  }

  tags = merge(local.tags, {
    Name                 = "${var.name}-server-${count.index}"
    (local.join_tag_key) = var.name
    "abaco:nomad-role"   = "server"
  })

  # A newer Ubuntu image or cloud-init must not replace every server at once (the
  # cluster's state would go with them). They apply to servers replaced one at a
  # time: terraform apply -replace='module.cluster.aws_instance.server[0]', then [1]...
  lifecycle {
    ignore_changes = [ami, user_data]
  }
}
