# The sqs-poller worker AMI: Amazon Linux 2023 + python3.11, the daemon in its own
# virtualenv, the systemd units, and the CloudWatch agent (logs and Prometheus metrics).
#
# Base image: Amazon Linux 2023. Its own repositories carry python3.11, the CloudWatch
# agent (amazon-cloudwatch-agent) and the SSM agent (preinstalled), all updated by AWS;
# it defaults to IMDSv2 and ships systemd 252, the version the unit is tested against.
# Ubuntu 24.04 would need the CloudWatch agent from an S3 .deb and the SSM agent from snap.
#
# Build: packer init packer/ && packer build packer/   (run from the repository root)

locals {
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())
  repo_root = "${path.root}/.."
  dist_dir  = "${path.root}/dist"
}

source "amazon-ebs" "al2023" {
  region      = var.region
  ami_regions = var.ami_regions
  # An encrypted AMI copied to another region needs a key in that region: AWS cannot
  # use the build region's key there (empty map: each region's EBS default key).
  region_kms_key_ids = var.region_kms_key_ids
  instance_type      = var.instance_type
  subnet_id          = var.subnet_id

  ami_name        = "sqs-poller-al2023-${var.architecture}-${local.timestamp}"
  ami_description = "sqs-poller worker: Amazon Linux 2023, python3.11 virtualenv in /opt/sqs-poller"

  source_ami_filter {
    filters = {
      # The kernel flavour is pinned: AL2023 publishes 6.1 and newer kernels side by side,
      # and most_recent would otherwise switch kernels between two builds.
      name                = "al2023-ami-2023.*-${var.kernel_flavour}-${var.architecture}"
      architecture        = var.architecture
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  # Instances launched from this AMI get IMDSv2 only, whatever launches them.
  # (imds_support and metadata_options need the amazon plugin >= 1.1; Debian's packer
  # 1.6.6 used by `make test` predates them: see tests/test_packer.py.)
  imds_support = "v2.0"

  # ...and so does the build instance itself.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = var.root_volume_size
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }

  encrypt_boot = true
  kms_key_id   = var.kms_key_id
  ena_support  = true

  communicator              = "ssh"
  ssh_username              = "ec2-user"
  ssh_clear_authorized_keys = true

  tags = {
    Name         = "sqs-poller"
    BaseImage    = "{{ .SourceAMIName }}"
    Architecture = var.architecture
  }
  run_tags = {
    Name = "packer-sqs-poller"
  }
}

build {
  sources = ["source.amazon-ebs.al2023"]

  # The wheel is built from this checkout, on the machine running packer.
  provisioner "shell-local" {
    inline = [
      "rm -rf '${local.dist_dir}'",
      "python3 -m pip wheel --no-deps --wheel-dir '${local.dist_dir}' '${local.repo_root}'",
    ]
  }

  provisioner "shell" {
    inline = ["mkdir -p /tmp/sqs-poller/dist /tmp/sqs-poller/files /tmp/sqs-poller/systemd /tmp/sqs-poller/doc"]
  }

  # generated: the wheel appears only once shell-local has run, after validation.
  provisioner "file" {
    source      = "${local.dist_dir}/"
    destination = "/tmp/sqs-poller/dist"
    generated   = true
  }

  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "/tmp/sqs-poller/files"
  }

  provisioner "file" {
    source      = "${local.repo_root}/systemd/"
    destination = "/tmp/sqs-poller/systemd"
  }

  provisioner "file" {
    source      = "${local.repo_root}/docs/operations.md"
    destination = "/tmp/sqs-poller/doc/operations.md"
  }

  provisioner "shell" {
    execute_command = "sudo env {{ .Vars }} bash -eu '{{ .Path }}'"
    environment_vars = [
      "EXTRA_REQUIREMENTS=${var.extra_requirements}",
      "PIP_INDEX_URL=${var.pip_index_url}",
    ]
    script = "${path.root}/scripts/provision.sh"
  }

  # Last: no build-time key, host key, cloud-init state or shell history in the image.
  provisioner "shell" {
    execute_command = "sudo bash -eu '{{ .Path }}'"
    script          = "${path.root}/scripts/cleanup.sh"
  }

  post-processor "manifest" {
    output     = "${path.root}/manifest.json"
    strip_path = true
  }
}
