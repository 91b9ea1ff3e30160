# A site without a NOC topic yet: the module creates the SNS topic and subscribes an e-mail
# address to it (someone must confirm the subscription from AWS's mail), and the package
# comes from an HTTPS artifact server instead of S3. One connection only, and the VPC has
# interface endpoints for EC2, CloudWatch and SNS, so HTTPS stays inside the VPC.
#
# Keep every argument below a literal value: deploy/terraform/check.sh reads this block as
# a .tfvars file, renders the user data from it, and runs `tunnelkeeper check-config` on
# the config the instance would get.

module "tunnelkeeper" {
  source = "../.."

  name       = "tk-lab"
  vpc_id     = "vpc-0f1e2d3c4b5a69788"
  subnet_id  = "subnet-0f1e2d3c4b5a69788"
  private_ip = "10.1.2.30"

  vpn_connections = [
    {
      id   = "vpn-0aaaaaaaaaaaaaaa1"
      name = "lab"
      tunnels = [
        { name = "lab-a", outside_ip = "3.208.1.10", targets = ["192.168.255.1"] },
        { name = "lab-b", outside_ip = "3.208.1.11", targets = ["192.168.255.2"] },
      ]
    },
  ]

  # A shared target without a name: the daemon names it by its address.
  shared_targets = [
    { address = "192.168.10.5" },
  ]

  datacenter_cidrs  = ["192.168.0.0/16"]
  http_reader_cidrs = ["192.168.10.0/24"]

  # Interface endpoints only: no HTTPS to the internet.
  https_egress_cidrs = []

  create_sns_topic  = true
  page_email        = "noc@example.org"
  page_min_severity = "critical"

  create_tunnel_state_alarms = false

  # Apply AWS's pending tunnel maintenance on Sunday nights, Paris time, when safe.
  maintenance_apply    = "when-safe"
  maintenance_windows  = ["Sun 02:00-05:00"]
  maintenance_timezone = "Europe/Paris"

  package_url    = "https://artifacts.example.org/tunnelkeeper/tunnelkeeper_0.1.0_amd64.deb"
  package_sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
}
