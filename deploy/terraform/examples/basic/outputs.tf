output "instance_id" {
  value = module.tunnelkeeper.instance_id
}

output "health_url" {
  description = "Give this to the SiteScope URL monitor."
  value       = module.tunnelkeeper.health_url
}

output "prometheus_target" {
  value = module.tunnelkeeper.prometheus_target
}

output "iam_role_arn" {
  description = "Grant this role s3:GetObject on the package in the artifacts bucket's policy."
  value       = module.tunnelkeeper.iam_role_arn
}
