terraform {
  # mock_provider in tests/*.tftest.hcl needs 1.7.
  required_version = ">= 1.7"

  required_providers {
    nomad = {
      source  = "hashicorp/nomad"
      version = ">= 2.0"
    }
  }
}
