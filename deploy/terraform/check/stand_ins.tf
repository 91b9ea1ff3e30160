# Stands in for main.tf when check.sh evaluates documents.tf and variables.tf without the
# AWS provider (none can be downloaded where CI runs). Only the two values main.tf gets
# from AWS are made up here; everything else is the module's own code.

locals {
  # main.tf: data.aws_region.current.region
  region = "us-east-1"
  # main.tf: the created topic's ARN, or var.sns_topic_arn
  sns_topic_arn = var.create_sns_topic ? "arn:aws:sns:${local.region}:123456789012:${var.name}-pages" : var.sns_topic_arn
}

output "user_data" {
  value = local.user_data
}

output "config_toml" {
  value = local.config_toml
}

output "daemon_policy" {
  value = jsonencode(local.daemon_policy)
}
