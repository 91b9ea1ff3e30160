# The keepalive instance: the EC2 instance tunnelkeeper runs on, with the datacenter's ICMP
# and SiteScope's reads let in. The role is in iam.tf, the alarms and the topic in
# alarms.tf, and what the instance is told (config, user data, policy) in documents.tf.

data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

# The AMI must match the instance type's architecture, and so must the package.
data "aws_ec2_instance_type" "this" {
  instance_type = var.instance_type
}

data "aws_ami" "debian" {
  count = var.ami_id == null ? 1 : 0

  most_recent = true
  # Debian's own AWS account: the images the Debian cloud team publishes.
  owners = ["136693071363"]

  filter {
    name   = "name"
    values = ["debian-12-${local.deb_architecture}-*"]
  }
  filter {
    name   = "architecture"
    values = [local.ec2_architecture]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  region = data.aws_region.current.region

  sns_topic_arn = var.create_sns_topic ? aws_sns_topic.pages[0].arn : var.sns_topic_arn

  # Graviton types list arm64 only; x86 types list x86_64 (and some i386 too).
  ec2_architecture = contains(data.aws_ec2_instance_type.this.supported_architectures, "arm64") ? "arm64" : "x86_64"
  deb_architecture = local.ec2_architecture == "arm64" ? "arm64" : "amd64"

  ami_id = var.ami_id != null ? var.ami_id : data.aws_ami.debian[0].id

  # Every address the daemon pings, as /32s: pinned targets are often loopbacks on the
  # customer gateways, outside the datacenter networks.
  target_cidrs = [for a in concat(
    flatten([for c in var.vpn_connections : [for t in c.tunnels : t.targets]]),
    [for s in var.shared_targets : s.address],
  ) : "${a}/32"]

  tags = merge({ Name = var.name }, var.tags)
}

resource "aws_instance" "this" {
  ami                  = local.ami_id
  instance_type        = var.instance_type
  subnet_id            = var.subnet_id
  private_ip           = var.private_ip
  iam_instance_profile = aws_iam_instance_profile.this.name

  vpc_security_group_ids      = [aws_security_group.this.id]
  associate_public_ip_address = false

  # cloud-init acts on user data once, at first boot: a new config or package must come
  # with a new instance, or the instance would silently run the old one. With private_ip
  # set, the new instance comes back on the same address.
  user_data                   = local.user_data
  user_data_replace_on_change = true

  # One-minute CPU and network metrics, for whoever looks at this instance when an alarm
  # fires. (Status checks, which the recovery alarm watches, are per minute anyway.)
  monitoring    = true
  ebs_optimized = true

  metadata_options {
    http_endpoint = "enabled"
    # IMDSv2 only. The daemon runs on the host, so one hop is enough.
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_id
    delete_on_termination = true
    tags                  = local.tags
  }

  maintenance_options {
    auto_recovery = "default"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = !can(regex("_(amd64|arm64)\\.deb$", var.package_url)) || endswith(var.package_url, "_${local.deb_architecture}.deb")
      error_message = "package_url names a package for another architecture than ${var.instance_type} (${local.deb_architecture})."
    }
  }
}

# ---------------------------------------------------------------------------------------
# Security group: nothing in but ICMP from the datacenter and TCP 9478 from the readers;
# nothing out but the daemon's pings and HTTPS to AWS (and the package).

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-"
  description = "tunnelkeeper keepalive instance: ICMP with the datacenter, 9478 for SiteScope and Prometheus, HTTPS to AWS"
  vpc_id      = var.vpc_id
  tags        = local.tags

  # A replacement group (a new name_prefix, say) must exist before the instance moves to it.
  lifecycle {
    create_before_destroy = true
  }
}

# All ICMP types, not just echo requests: SiteScope pings the instance, and the datacenter's
# routers answer the daemon's probes with unreachable and fragmentation-needed errors,
# which the daemon counts apart from plain timeouts.
resource "aws_vpc_security_group_ingress_rule" "icmp_from_datacenter" {
  for_each = toset(var.datacenter_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "ICMP from the datacenter: SiteScope ping, router errors"
  ip_protocol       = "icmp"
  from_port         = -1
  to_port           = -1
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "http_from_readers" {
  for_each = toset(var.http_reader_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "tunnelkeeper /health, /status, /metrics: SiteScope, Prometheus"
  ip_protocol       = "tcp"
  from_port         = local.http_port
  to_port           = local.http_port
  cidr_ipv4         = each.value
  tags              = local.tags
}

# Echo requests only (type 8, any code): the replies, and the echo replies to SiteScope,
# are let through by the group's connection tracking.
resource "aws_vpc_security_group_egress_rule" "ping_to_datacenter" {
  for_each = toset(distinct(concat(var.datacenter_cidrs, local.target_cidrs)))

  security_group_id = aws_security_group.this.id
  description       = "tunnelkeeper probes: ICMP echo to the datacenter and every target"
  ip_protocol       = "icmp"
  from_port         = 8
  to_port           = -1
  cidr_ipv4         = each.value
  tags              = local.tags
}

# Interface endpoints in the VPC (ec2, monitoring, sns), if it has them.
resource "aws_vpc_security_group_egress_rule" "https_to_vpc" {
  security_group_id = aws_security_group.this.id
  description       = "HTTPS to VPC interface endpoints for EC2, CloudWatch, SNS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = data.aws_vpc.this.cidr_block
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "https_to_aws" {
  for_each = toset(var.https_egress_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "HTTPS to the AWS public endpoints and the package source"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "https_to_prefix_lists" {
  for_each = toset(var.https_egress_prefix_list_ids)

  security_group_id = aws_security_group.this.id
  description       = "HTTPS to a managed prefix list (the S3 gateway endpoint, say)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = each.value
  tags              = local.tags
}

# An s3:// package needs the AWS CLI, which cloud-init installs from the Debian archive at
# first boot. Debian's images may name their archive mirror with an http:// URL (apt checks
# the archive's signatures, not the transport), so HTTPS alone may not reach it.
resource "aws_vpc_security_group_egress_rule" "debian_archive" {
  for_each = local.package_from_s3 ? toset(var.https_egress_cidrs) : toset([])

  security_group_id = aws_security_group.this.id
  description       = "HTTP to the Debian archive, for the AWS CLI at first boot"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
  tags              = local.tags
}
