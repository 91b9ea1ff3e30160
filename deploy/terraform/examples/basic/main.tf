# The City's keepalive instance: two VPN connections of two tunnels, each tunnel probed
# through the /32 the datacenter advertises on it, two shared datacenter hosts, pages to the
# NOC's existing topic. Values match config/example.toml.
#
# Keep every argument below a literal value: deploy/terraform/check.sh reads this block as
# a .tfvars file, renders the user data from it, and runs `tunnelkeeper check-config` on
# the config the instance would get. In a real root module, take the ids from your VPN
# resources (aws_vpn_connection.x.id, .tunnel1_address, .tunnel2_address).

module "tunnelkeeper" {
  source = "../.."

  name       = "tunnelkeeper"
  vpc_id     = "vpc-0a1b2c3d4e5f60718"
  subnet_id  = "subnet-0a1b2c3d4e5f60718"
  private_ip = "10.0.1.20"

  vpn_connections = [
    {
      id   = "vpn-0123456789abcdef0"
      name = "dc-primary"
      tunnels = [
        { name = "dc-primary-a", outside_ip = "52.2.144.13", targets = ["172.16.1.10", "172.16.1.11"] },
        { name = "dc-primary-b", outside_ip = "52.2.144.14", targets = ["172.16.2.10"] },
      ]
    },
    {
      id   = "vpn-0fedcba9876543210"
      name = "dc-secondary"
      tunnels = [
        { name = "dc-secondary-a", outside_ip = "34.193.10.21", targets = ["172.16.3.10"] },
        { name = "dc-secondary-b", outside_ip = "34.193.10.22", targets = ["172.16.4.10"] },
      ]
    },
  ]

  shared_targets = [
    { name = "registry-db", address = "10.20.0.5" },
    { name = "ldap", address = "10.20.0.9" },
  ]

  # SiteScope lives in 10.20.0.0/16 and pings the instance today; keep that working.
  datacenter_cidrs = ["10.20.0.0/16", "172.16.0.0/16"]
  # SiteScope's URL monitor and the Prometheus servers.
  http_reader_cidrs = ["10.20.30.40/32", "10.0.8.0/24"]

  sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:noc-page"
  runbook_url   = "https://wiki.example.org/network/tunnelkeeper-runbook"

  # The release's package in the City's artifacts bucket, and its sha256sum (a placeholder
  # here). The bucket's policy grants the instance role (output iam_role_arn) s3:GetObject.
  package_url    = "s3://city-artifacts-us-east-1/tunnelkeeper/tunnelkeeper_0.1.0_amd64.deb"
  package_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

  tags = {
    CostCenter = "network"
  }
}
