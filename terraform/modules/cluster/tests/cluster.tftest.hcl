# `terraform test` with a mocked AWS provider: no credentials, no API calls.
# Run from terraform/modules/cluster after `terraform init` (tests/test_terraform.py
# does both in a temporary copy, from an offline provider mirror).

mock_provider "aws" {
  # Values the provider checks the shape of, where the mock's random strings won't do.
  mock_resource "aws_launch_template" {
    defaults = {
      id = "lt-0123456789abcdef0"
    }
  }

  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/abaco-api/0123456789abcdef"
      dns_name = "abaco-api-123456789.us-east-1.elb.amazonaws.com"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/abaco-api/0123456789abcdef"
    }
  }
}

variables {
  subnet_ids        = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  admin_cidr_blocks = ["203.0.113.0/24"]
}

run "one_server_instance_per_server_count" {
  command = plan

  variables {
    server_count = 5
  }

  assert {
    condition     = length(aws_instance.server) == 5
    error_message = "expected one server instance per server_count"
  }

  assert {
    condition     = strcontains(aws_instance.server[0].user_data, "bootstrap_expect = 5")
    error_message = "the servers' Nomad config must expect server_count servers"
  }

  assert {
    condition     = aws_instance.server[1].subnet_id == "subnet-0bbbbbbbbbbbbbbbb" && aws_instance.server[2].subnet_id == "subnet-0aaaaaaaaaaaaaaaa"
    error_message = "servers must be spread over the subnets in turn"
  }

  assert {
    condition     = aws_instance.server[0].tags["NomadCluster"] == "abaco"
    error_message = "servers carry the tag that cloud auto-join looks for"
  }
}

run "servers_cloud_init_installs_and_configures_nomad" {
  command = plan

  assert {
    condition     = can(yamldecode(aws_instance.server[0].user_data))
    error_message = "the servers' user data must be valid YAML"
  }

  assert {
    condition     = startswith(aws_instance.server[0].user_data, "#cloud-config\n")
    error_message = "the servers' user data must be cloud-config"
  }

  assert {
    condition     = strcontains(aws_instance.server[0].user_data, "https://apt.releases.hashicorp.com") && strcontains(aws_instance.server[0].user_data, "apt-get install -y nomad\n")
    error_message = "servers install Nomad from HashiCorp's apt repository"
  }

  assert {
    condition     = strcontains(aws_instance.server[0].user_data, "bootstrap_expect = 3")
    error_message = "bootstrap_expect follows server_count (3 by default)"
  }

  assert {
    condition     = strcontains(aws_instance.server[0].user_data, "provider=aws region=") && strcontains(aws_instance.server[0].user_data, "tag_key=NomadCluster tag_value=abaco")
    error_message = "servers find each other with cloud auto-join by tag"
  }

  assert {
    condition     = !strcontains(aws_instance.server[0].user_data, "docker.io")
    error_message = "servers run no workloads and need no Docker"
  }
}

run "clients_cloud_init_installs_docker_and_nomad" {
  command = plan

  assert {
    condition     = can(yamldecode(base64decode(aws_launch_template.client.user_data)))
    error_message = "the clients' user data must be valid YAML"
  }

  assert {
    condition     = contains(yamldecode(base64decode(aws_launch_template.client.user_data)).packages, "docker.io")
    error_message = "clients install Docker"
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.client.user_data), "apt-get install -y nomad") && strcontains(base64decode(aws_launch_template.client.user_data), "systemctl enable --now docker")
    error_message = "clients install Nomad and start Docker"
  }

  assert {
    condition     = !strcontains(base64decode(aws_launch_template.client.user_data), "host_volume")
    error_message = "the autoscaling group's clients hold no data: no host volumes"
  }

  assert {
    condition     = strcontains(base64decode(aws_launch_template.client.user_data), "volumes {\n            enabled = true")
    error_message = "the docker plugin allows volumes (the scheduler mounts the Docker socket)"
  }

  assert {
    condition     = !strcontains(base64decode(aws_launch_template.client.user_data), "bootstrap_expect")
    error_message = "clients are not servers"
  }
}

run "the_storage_client_holds_the_host_volumes" {
  command = plan

  assert {
    condition     = length(aws_instance.storage) == 1 && can(yamldecode(aws_instance.storage[0].user_data))
    error_message = "one storage client, with valid cloud-config"
  }

  assert {
    condition     = strcontains(aws_instance.storage[0].user_data, "host_volume \"abaco-redis\"") && strcontains(aws_instance.storage[0].user_data, "host_volume \"abaco-minio\"")
    error_message = "the storage client declares the Redis and MinIO host volumes"
  }

  assert {
    condition     = strcontains(aws_instance.storage[0].user_data, "mkdir -p \"/opt/abaco/redis\"") && strcontains(aws_instance.storage[0].user_data, "mkdir -p \"/opt/abaco/minio\"")
    error_message = "the host volumes' directories exist before Nomad starts"
  }

  assert {
    condition     = strcontains(aws_instance.storage[0].user_data, "node_class = \"storage\"") && strcontains(aws_instance.storage[0].user_data, "docker.io")
    error_message = "the storage client is a Docker client of class storage"
  }

  assert {
    condition     = aws_instance.storage[0].root_block_device[0].delete_on_termination == false
    error_message = "the data outlives the instance"
  }
}

run "client_count_sizes_the_autoscaling_group" {
  command = plan

  variables {
    client_count            = 4
    client_instance_type    = "m6i.xlarge"
    client_root_volume_size = 120
  }

  assert {
    condition     = aws_autoscaling_group.client.desired_capacity == 4 && aws_autoscaling_group.client.min_size == 4 && aws_autoscaling_group.client.max_size == 4
    error_message = "the clients' group holds client_count instances"
  }

  assert {
    condition     = aws_launch_template.client.instance_type == "m6i.xlarge"
    error_message = "clients use client_instance_type"
  }

  assert {
    condition     = aws_launch_template.client.block_device_mappings[0].ebs[0].volume_size == 120
    error_message = "clients' root volume is client_root_volume_size GiB"
  }
}

run "security_group_opens_nomad_ports" {
  command = plan

  assert {
    condition     = aws_vpc_security_group_ingress_rule.cluster_internal["nomad_tcp"].from_port == 4646 && aws_vpc_security_group_ingress_rule.cluster_internal["nomad_tcp"].to_port == 4648
    error_message = "nodes reach each other on Nomad's ports 4646-4648"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.cluster_internal["serf_udp"].ip_protocol == "udp" && aws_vpc_security_group_ingress_rule.cluster_internal["serf_udp"].from_port == 4648
    error_message = "Serf gossips over UDP 4648 too"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.nomad_api["203.0.113.0/24"].from_port == 4646 && aws_vpc_security_group_ingress_rule.nomad_api["203.0.113.0/24"].to_port == 4646
    error_message = "admin_cidr_blocks reach Nomad's API on 4646"
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.ssh) == 0
    error_message = "no SSH rule without a key pair"
  }

  assert {
    condition     = length(aws_lb.api) == 0 && length(aws_vpc_security_group_ingress_rule.api_direct) == 0
    error_message = "no load balancer and no API exposure unless asked"
  }
}

run "instances_may_describe_instances_for_auto_join" {
  assert {
    condition     = jsondecode(aws_iam_role_policy.auto_join.policy).Statement[0].Action == ["ec2:DescribeInstances"]
    error_message = "the nodes' role allows ec2:DescribeInstances, and only that"
  }

  assert {
    condition     = aws_instance.server[0].iam_instance_profile == aws_iam_instance_profile.node.name
    error_message = "servers use the instance profile"
  }
}

run "outputs" {
  # apply: the mock provider then fills the attributes AWS would compute (IPs, ids)

  assert {
    condition     = output.nomad_addr == "http://${aws_instance.server[0].public_ip}:4646"
    error_message = "nomad_addr is the first server's public address on 4646"
  }

  assert {
    condition     = length(output.server_ips) == 3
    error_message = "one server IP per server"
  }

  assert {
    condition     = output.client_security_group_id == aws_security_group.clients.id
    error_message = "client_security_group_id is the clients' group"
  }

  assert {
    condition     = output.api_url == null
    error_message = "no api_url without a load balancer"
  }

  assert {
    condition     = output.storage_ip == aws_instance.storage[0].private_ip
    error_message = "storage_ip is the storage client's private IP"
  }
}

run "no_storage_node" {
  variables {
    create_storage_node = false
  }

  assert {
    condition     = length(aws_instance.storage) == 0 && output.storage_ip == null
    error_message = "create_storage_node = false leaves the storage client out"
  }
}

run "private_nodes_give_a_private_nomad_addr" {
  variables {
    associate_public_ip_address = false
  }

  assert {
    condition     = output.nomad_addr == "http://${aws_instance.server[0].private_ip}:4646"
    error_message = "nomad_addr uses the private IP when nodes have no public one"
  }
}

run "load_balancer_in_front_of_the_api" {
  variables {
    create_load_balancer = true
    api_cidr_blocks      = ["0.0.0.0/0"]
  }

  assert {
    condition     = aws_lb_target_group.api[0].port == 8000 && aws_lb_listener.api[0].port == 80
    error_message = "the load balancer forwards port 80 to the API's port 8000"
  }

  assert {
    condition     = aws_autoscaling_group.client.target_group_arns == toset([aws_lb_target_group.api[0].arn])
    error_message = "clients register with the API's target group"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.api_from_lb[0].from_port == 8000 && length(aws_vpc_security_group_ingress_rule.api_direct) == 0
    error_message = "clients take the API's traffic from the load balancer only"
  }

  assert {
    condition     = aws_lb_target_group_attachment.storage[0].target_id == aws_instance.storage[0].id
    error_message = "the storage client, a client too, is in the target group"
  }

  assert {
    condition     = output.api_url == "http://${aws_lb.api[0].dns_name}"
    error_message = "api_url is the load balancer's URL"
  }
}

run "default_vpc_subnets_when_none_given" {
  command = plan

  variables {
    subnet_ids = []
  }

  override_data {
    target = data.aws_subnets.selected[0]
    values = {
      ids = ["subnet-0ccccccccccccccc2", "subnet-0ccccccccccccccc1"]
    }
  }

  assert {
    condition     = data.aws_vpc.selected[0].default == true
    error_message = "without subnet_ids or vpc_id, the default VPC"
  }

  assert {
    condition     = aws_instance.server[0].subnet_id == "subnet-0ccccccccccccccc1"
    error_message = "the VPC's subnets are used in sorted order"
  }
}

run "even_server_count_is_rejected" {
  command = plan

  variables {
    server_count = 2
  }

  expect_failures = [var.server_count]
}

run "zero_clients_are_rejected" {
  command = plan

  variables {
    client_count = 0
  }

  expect_failures = [var.client_count]
}

run "load_balancer_needs_two_subnets" {
  command = plan

  variables {
    create_load_balancer = true
    subnet_ids           = ["subnet-0aaaaaaaaaaaaaaaa"]
  }

  expect_failures = [aws_lb.api]
}
