output "instance_id" {
  description = "The keepalive instance's id."
  value       = aws_instance.this.id
}

output "private_ip" {
  description = "The instance's private IPv4 address: what SiteScope pings and reads."
  value       = aws_instance.this.private_ip
}

output "health_url" {
  description = "SiteScope's URL monitor: 200 with TUNNELKEEPER OK (or DEGRADED), 503 with TUNNELKEEPER CRITICAL; see docs/runbook.md#sitescope for the content match."
  value       = "http://${aws_instance.this.private_ip}:${local.http_port}/health"
}

output "prometheus_target" {
  description = "The scrape target for Prometheus (job=\"tunnelkeeper\", metrics_path /metrics)."
  value       = "${aws_instance.this.private_ip}:${local.http_port}"
}

output "iam_role_arn" {
  description = "The instance role. Grant it s3:GetObject in the package bucket's policy for an s3:// package_url, and use it in a KMS key policy for an encrypted topic."
  value       = aws_iam_role.this.arn
}

output "iam_role_name" {
  description = "The instance role's name, to attach anything beyond tunnelkeeper's own policy in the caller's code."
  value       = aws_iam_role.this.name
}

output "security_group_id" {
  description = "The instance's security group."
  value       = aws_security_group.this.id
}

output "sns_topic_arn" {
  description = "The topic the daemon and the alarms page to (created or given)."
  value       = local.sns_topic_arn
}

output "heartbeat_alarm_name" {
  description = "The heartbeat alarm: silence it (disable its actions) while replacing the instance on purpose."
  value       = aws_cloudwatch_metric_alarm.heartbeat.alarm_name
}

output "tunnel_log_group_arn" {
  description = "The tunnel activity logs group: set it as each VPN tunnel's LogOptions.CloudWatchLogOptions.LogGroupArn (LogEnabled = true), so that pages carry AWS's cause."
  value       = aws_cloudwatch_log_group.tunnel_logs.arn
}
