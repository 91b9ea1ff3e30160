output "health_url" {
  value = module.tunnelkeeper.health_url
}

output "sns_topic_arn" {
  description = "The topic the module created; subscribe the pager to it."
  value       = module.tunnelkeeper.sns_topic_arn
}
