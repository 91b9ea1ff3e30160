# What the module writes for others to read: the daemon's config, the instance's cloud-init
# user data, and the daemon's IAM policy.
#
# Provider-free on purpose. No provider can be downloaded where CI runs, so check.sh
# evaluates this file together with variables.tf and templates/ (and check/stand_ins.tf
# for the two values below that come from AWS), renders the user data for the example's
# inputs, runs `tunnelkeeper check-config` on the config it writes, and compares
# daemon_policy with deploy/iam-policy.json. Reference only var.*, path.module, locals
# defined here, and local.region and local.sns_topic_arn (main.tf).

locals {
  # The daemon's HTTP port: in its config, the security group and the outputs.
  http_port = 9478

  # The daemon publishes its Heartbeat once per interval and the heartbeat alarm expects
  # one per period: one number for both.
  heartbeat_period_seconds = 60

  package_from_s3 = startswith(var.package_url, "s3://")

  config_toml = templatefile("${path.module}/templates/config.toml.tftpl", {
    http_port            = local.http_port
    region               = local.region
    cloudwatch_namespace = var.cloudwatch_namespace
    cloudwatch_interval  = "${local.heartbeat_period_seconds}s"
    vpn_connections      = var.vpn_connections
    shared_targets       = var.shared_targets
    sns_topic_arn        = local.sns_topic_arn
    page_min_severity    = var.page_min_severity
    escalate_after       = var.escalate_after
    runbook_url          = var.runbook_url
    maintenance_apply    = var.maintenance_apply
    maintenance_windows  = var.maintenance_windows
    maintenance_timezone = var.maintenance_timezone
    tunnel_log_group     = var.tunnel_log_group_name
  })

  install_script = templatefile("${path.module}/templates/install-tunnelkeeper.sh.tftpl", {
    package_url    = var.package_url
    package_sha256 = var.package_sha256
    region         = local.region
    log_group      = "/${var.name}/journal"
  })

  user_data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    config_toml     = local.config_toml
    install_script  = local.install_script
    package_from_s3 = local.package_from_s3
  })

  # ReplaceVpnTunnel only where the daemon calls it (maintenance_apply = "when-safe"): a
  # dry run calls nothing. deploy/iam-policy-maintenance.json is the policy with it.
  apply_maintenance_statements = var.maintenance_apply == "when-safe" ? [
    {
      Sid    = "ApplyVpnTunnelMaintenance"
      Effect = "Allow"
      Action = "ec2:ReplaceVpnTunnel"
      # Takes the vpn-connection resource type: only the configured connections.
      Resource = [for c in var.vpn_connections : "arn:aws:ec2:${local.region}:*:vpn-connection/${c.id}"]
    },
  ] : []

  # deploy/iam-policy.json (deploy/iam-policy-maintenance.json with maintenance_apply =
  # "when-safe") with this deployment's namespace and topic filled in, statement for
  # statement (check.sh compares them): what the daemon calls, and nothing else.
  daemon_policy = {
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid    = "ReadVpnTunnelStatus"
        Effect = "Allow"
        Action = "ec2:DescribeVpnConnections"
        # DescribeVpnConnections has no resource-level permissions.
        Resource = "*"
      },
      {
        Sid    = "ReadVpnTunnelMaintenance"
        Effect = "Allow"
        Action = "ec2:GetVpnTunnelReplacementStatus"
        # Unlike DescribeVpnConnections it takes the vpn-connection resource type: only
        # the configured connections (any account: connection ids are unique).
        Resource = [for c in var.vpn_connections : "arn:aws:ec2:${local.region}:*:vpn-connection/${c.id}"]
      },
      {
        Sid    = "PublishTunnelFiguresAndHeartbeat"
        Effect = "Allow"
        Action = "cloudwatch:PutMetricData"
        # PutMetricData has no resource-level permissions; the namespace condition is the
        # only way to narrow it.
        Resource = "*"
        Condition = {
          StringEquals = {
            "cloudwatch:namespace" = var.cloudwatch_namespace
          }
        }
      },
      {
        Sid      = "PageTheNoc"
        Effect   = "Allow"
        Action   = "sns:Publish"
        Resource = local.sns_topic_arn
      },
      {
        Sid    = "ReadVpnTunnelLogs"
        Effect = "Allow"
        Action = "logs:FilterLogEvents"
        # The tunnel activity logs group only (any account: the name is the module's).
        Resource = "arn:aws:logs:${local.region}:*:log-group:${var.tunnel_log_group_name}:*"
      },
    ], local.apply_maintenance_statements)
  }
}
