# What pages when tunnelkeeper cannot: its heartbeat stops (daemon or instance dead), AWS
# itself reports tunnels down while the heartbeat is missing (the City's existing alarm,
# kept as a backstop), or EC2 finds the instance's host broken. All of them go to the same
# SNS topic as the daemon's own pages, and say so again when they clear. While the daemon
# runs, it alone pages a tunnel (at once when critical, at escalate_after when a warning):
# the AWS alarm would page the same tunnel a second time 15 minutes later.

resource "aws_sns_topic" "pages" {
  count = var.create_sns_topic ? 1 : 0

  # Standard, not FIFO: FIFO topics cannot deliver to e-mail, SMS or HTTPS subscribers.
  name = "${var.name}-pages"
  # Encryption is opt-in (sns_topic_kms_key_id): CloudWatch alarms cannot publish to a topic
  # under the AWS managed key, and a customer managed key needs a key policy admitting
  # CloudWatch and the instance role, which is the key owner's to write. Pages carry tunnel
  # names and addresses, no secrets.
  kms_master_key_id = var.sns_topic_kms_key_id
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "page_email" {
  count = var.create_sns_topic && var.page_email != null ? 1 : 0

  topic_arn = aws_sns_topic.pages[0].arn
  protocol  = "email"
  endpoint  = var.page_email
}

# The dead man's switch (README.md, "AWS"): the daemon publishes one Heartbeat per minute;
# fewer than one in each of three minutes, or none at all, pages. Missing data is breaching,
# since a dead daemon or instance sends nothing.
resource "aws_cloudwatch_metric_alarm" "heartbeat" {
  alarm_name        = "${var.name}-heartbeat"
  alarm_description = "tunnelkeeper on ${aws_instance.this.id} (${aws_instance.this.private_ip}) stopped publishing its Heartbeat: the VPN tunnels are unwatched and not kept busy. Runbook: ${coalesce(var.runbook_url, "docs/runbook.md")}#the-daemon-itself"

  namespace   = var.cloudwatch_namespace
  metric_name = "Heartbeat"
  # The daemon sends the Heartbeat without dimensions.
  statistic           = "SampleCount"
  period              = local.heartbeat_period_seconds
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"

  actions_enabled = true
  alarm_actions   = [local.sns_topic_arn]
  ok_actions      = [local.sns_topic_arn]
  tags            = local.tags
}

# AWS/VPN TunnelState with only the VpnId dimension is the connection's tunnels averaged:
# 1 with both up, 0.5 with one, 0 with none. Its Maximum over a period stays below 1 while
# a tunnel is down the whole period, below 0.5 while both are. AWS publishes it every
# 5 minutes, and three periods is AWS's own recipe: this pages 15 minutes into an outage,
# whatever tunnelkeeper thinks. Missing data is breaching: AWS publishes TunnelState for as
# long as the connection exists. It pages nobody itself: the composite alarm below pages
# when it and the heartbeat alarm are both in ALARM (the daemon cannot page the tunnel).
locals {
  tunnel_state_threshold = var.tunnel_state_alarm_when == "both_tunnels_down" ? 0.5 : 1
  tunnel_state_meaning   = var.tunnel_state_alarm_when == "both_tunnels_down" ? "both tunnels" : "a tunnel"
}

resource "aws_cloudwatch_metric_alarm" "tunnel_state" {
  for_each = var.create_tunnel_state_alarms ? { for c in var.vpn_connections : c.name => c } : {}

  alarm_name        = "${var.name}-${each.key}-tunnel-state"
  alarm_description = "AWS reports ${local.tunnel_state_meaning} of VPN connection ${each.key} (${each.value.id}) down for 15 minutes. Pages only through ${var.name}-${each.key}-tunnel-state-unwatched, while tunnelkeeper's heartbeat is missing too."

  namespace   = "AWS/VPN"
  metric_name = "TunnelState"
  dimensions = {
    VpnId = each.value.id
  }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = local.tunnel_state_threshold
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"

  # No actions of its own: tunnelkeeper pages this tunnel while it runs; the composite
  # below pages when it does not. (Enabled, with none: a disabled alarm's state is still
  # evaluated, but checkov reads it as an alarm someone switched off.)
  actions_enabled = true
  tags            = local.tags
}

resource "aws_cloudwatch_composite_alarm" "tunnel_state_unwatched" {
  for_each = aws_cloudwatch_metric_alarm.tunnel_state

  alarm_name        = "${each.value.alarm_name}-unwatched"
  alarm_description = "AWS reports ${local.tunnel_state_meaning} of VPN connection ${each.key} down for 15 minutes, and tunnelkeeper's heartbeat is missing, so it cannot page this itself. Runbook: ${coalesce(var.runbook_url, "docs/runbook.md")}#${var.tunnel_state_alarm_when == "both_tunnels_down" ? "connectiondown" : "tunneldown"}"
  alarm_rule        = "ALARM(\"${each.value.alarm_name}\") AND ALARM(\"${aws_cloudwatch_metric_alarm.heartbeat.alarm_name}\")"

  actions_enabled = true
  alarm_actions   = [local.sns_topic_arn]
  ok_actions      = [local.sns_topic_arn]
  tags            = local.tags
}

# EC2's system status check fails when the host under the instance breaks (power, network,
# hardware). Recovery moves the instance to a healthy host with the same id, private IP,
# volume and metadata, so SiteScope's address and the heartbeat come back by themselves.
resource "aws_cloudwatch_metric_alarm" "auto_recovery" {
  count = var.create_auto_recovery_alarm ? 1 : 0

  alarm_name        = "${var.name}-auto-recovery"
  alarm_description = "EC2 system status check failed for the tunnelkeeper instance ${aws_instance.this.id}: recovering it on another host."

  namespace   = "AWS/EC2"
  metric_name = "StatusCheckFailed_System"
  dimensions = {
    InstanceId = aws_instance.this.id
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  # A stopped instance has no status checks; that is not a host failure.
  treat_missing_data = "missing"

  actions_enabled = true
  alarm_actions = [
    "arn:${data.aws_partition.current.partition}:automate:${local.region}:ec2:recover",
    local.sns_topic_arn,
  ]
  ok_actions = [local.sns_topic_arn]
  tags       = local.tags
}

# The VPN tunnels' activity logs (IKE, IPsec, DPD): the daemon reads them for the cause of
# an outage. Each tunnel's LogOptions.CloudWatchLogOptions must point here (the module does
# not own the VPN connections); `tunnelkeeper check-config` warns while they do not.
resource "aws_cloudwatch_log_group" "tunnel_logs" {
  #checkov:skip=CKV_AWS_158:AWS writes the VPN tunnel logs itself; a customer KMS key would need a key policy for the VPN service's log delivery, left to the caller.
  name              = var.tunnel_log_group_name
  retention_in_days = var.tunnel_log_retention_days
  tags              = local.tags
}
