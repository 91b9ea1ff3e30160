# Inputs. Validation here mirrors what `tunnelkeeper check-config` enforces, so that a bad
# value fails at `terraform plan` instead of on the instance, where it would only show as a
# daemon that never starts (and a heartbeat page minutes later).
#
# This file must stay provider-free: check.sh evaluates it, with documents.tf, without the
# AWS provider.

# ---------------------------------------------------------------------------------------
# Where the instance lives

variable "name" {
  description = "Name of the instance and prefix of every resource the module creates (role, security group, alarms, topic)."
  type        = string
  default     = "tunnelkeeper"

  validation {
    # IAM takes a name_prefix of at most 38 characters, and the module adds "-".
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,31}$", var.name))
    error_message = "name must start with a letter and hold 1 to 32 letters, digits or '-'."
  }
}

variable "vpc_id" {
  description = "The VPC that reaches the datacenter through the virtual private gateway."
  type        = string

  validation {
    condition     = can(regex("^vpc-([0-9a-f]{8}|[0-9a-f]{17})$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "subnet_id" {
  description = "The private subnet for the instance. One instance in one subnet: SiteScope and the datacenter's firewall rules point at one address."
  type        = string

  validation {
    condition     = can(regex("^subnet-([0-9a-f]{8}|[0-9a-f]{17})$", var.subnet_id))
    error_message = "subnet_id must look like subnet-0123456789abcdef0."
  }
}

variable "private_ip" {
  description = "Fixed private IPv4 address for the instance, inside subnet_id. Set it: SiteScope's ping and URL monitor and the datacenter's rules use this address, and a rebuilt instance keeps it. Null lets AWS pick a new one on every rebuild."
  type        = string
  default     = null

  validation {
    condition     = var.private_ip == null || can(regex("^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$", var.private_ip))
    error_message = "private_ip must be an IPv4 address such as 10.0.1.20."
  }
}

# ---------------------------------------------------------------------------------------
# What the daemon watches (becomes /etc/tunnelkeeper/config.toml)

variable "vpn_connections" {
  description = <<-EOT
    The Site-to-Site VPN connections of the virtual private gateway, each with its two
    tunnels. Per tunnel: a name (unique, used in pages and metric labels), its AWS outside
    IP address (joins EC2's telemetry to the tunnel: aws_vpn_connection's tunnel1_address /
    tunnel2_address), and its pinned targets: IPv4 addresses the datacenter advertises on
    that tunnel only, so that a ping to them crosses that tunnel (README.md, "Pinned
    targets"). An empty list is allowed (static routing cannot pin per tunnel); that
    tunnel's data plane then stays unknown.
  EOT
  type = list(object({
    id   = string
    name = string
    tunnels = list(object({
      name       = string
      outside_ip = string
      targets    = list(string)
    }))
  }))

  validation {
    condition     = length(var.vpn_connections) > 0
    error_message = "vpn_connections needs at least one connection."
  }
  validation {
    condition     = alltrue([for c in var.vpn_connections : can(regex("^vpn-([0-9a-f]{8}|[0-9a-f]{17})$", c.id))])
    error_message = "Each vpn_connections[*].id must be a VPN connection id: \"vpn-\" and 8 or 17 hex digits."
  }
  validation {
    condition     = alltrue([for c in var.vpn_connections : length(c.tunnels) == 2])
    error_message = "Each VPN connection must list exactly two tunnels: an AWS Site-to-Site VPN connection has two, and an unlisted one goes unwatched."
  }
  validation {
    condition = alltrue(flatten([for c in var.vpn_connections : concat(
      [can(regex("^[A-Za-z0-9._-]{1,64}$", c.name))],
      [for t in c.tunnels : can(regex("^[A-Za-z0-9._-]{1,64}$", t.name))],
    )]))
    error_message = "Connection and tunnel names must be 1 to 64 letters, digits, '-', '_' or '.'."
  }
  validation {
    condition = alltrue(flatten([for c in var.vpn_connections : [for t in c.tunnels : concat(
      [can(regex("^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$", t.outside_ip))],
      [for a in t.targets : can(regex("^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$", a))],
    )]]))
    error_message = "Every tunnel outside_ip and pinned target must be an IPv4 address such as 172.16.1.10 (no IPv6 crosses a virtual private gateway)."
  }
  validation {
    condition = (
      length(distinct([for c in var.vpn_connections : c.id])) == length(var.vpn_connections) &&
      length(distinct([for c in var.vpn_connections : c.name])) == length(var.vpn_connections) &&
      length(distinct(flatten([for c in var.vpn_connections : [for t in c.tunnels : t.name]]))) == length(flatten([for c in var.vpn_connections : c.tunnels])) &&
      length(distinct(flatten([for c in var.vpn_connections : [for t in c.tunnels : t.outside_ip]]))) == length(flatten([for c in var.vpn_connections : c.tunnels]))
    )
    error_message = "Connection ids, connection names, tunnel names and tunnel outside IPs must each be unique."
  }
  validation {
    # A pinned target probes one tunnel; listing it twice, or also as a shared target, would
    # make the daemon refuse its config. The map groups the uses of each address.
    condition = alltrue([for address, uses in {
      for a in concat(
        flatten([for c in var.vpn_connections : [for t in c.tunnels : t.targets]]),
        [for s in var.shared_targets : s.address],
      ) : a => a...
    } : length(uses) == 1])
    error_message = "Each target address may appear once, pinned to one tunnel or shared, not both."
  }
}

variable "shared_targets" {
  description = "Datacenter hosts reached through whichever tunnel the gateway uses (README.md, shared targets). name is optional and defaults to the address."
  type = list(object({
    name    = optional(string)
    address = string
  }))
  default = []

  validation {
    condition     = alltrue([for s in var.shared_targets : can(regex("^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$", s.address))])
    error_message = "Every shared_targets[*].address must be an IPv4 address such as 10.20.0.5."
  }
  validation {
    condition     = alltrue([for s in var.shared_targets : s.name == null || can(regex("^[A-Za-z0-9._-]{1,64}$", coalesce(s.name, "-")))])
    error_message = "shared_targets[*].name must be 1 to 64 letters, digits, '-', '_' or '.'."
  }
  validation {
    condition     = length(distinct([for s in var.shared_targets : s.name if s.name != null])) == length([for s in var.shared_targets : s.name if s.name != null])
    error_message = "shared_targets names must be unique."
  }
}

variable "cloudwatch_namespace" {
  description = "CloudWatch namespace the daemon publishes its figures and Heartbeat to. The instance role may publish to this namespace only, and the heartbeat alarm watches it."
  type        = string
  default     = "Tunnelkeeper"

  validation {
    condition     = length(var.cloudwatch_namespace) >= 1 && length(var.cloudwatch_namespace) <= 255 && !startswith(var.cloudwatch_namespace, "AWS/")
    error_message = "cloudwatch_namespace must be 1 to 255 characters, and \"AWS/\" is reserved for AWS."
  }
}

variable "tunnel_log_group_name" {
  description = "CloudWatch Logs group for the VPN tunnels' activity logs, created here with a retention: point each tunnel's LogOptions.CloudWatchLogOptions at it (output tunnel_log_group_arn) so that pages say why a tunnel went down. The instance role may read (logs:FilterLogEvents) this group only."
  type        = string
  default     = "/tunnelkeeper/vpn-tunnel-logs"

  validation {
    condition     = can(regex("^[A-Za-z0-9_./#-]{1,512}$", var.tunnel_log_group_name))
    error_message = "tunnel_log_group_name must be 1 to 512 of A-Z a-z 0-9 _ - / . #."
  }
}

variable "tunnel_log_retention_days" {
  description = "How long the tunnel activity logs are kept, in days (one of CloudWatch Logs' retention values)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.tunnel_log_retention_days)
    error_message = "tunnel_log_retention_days must be one of CloudWatch Logs' retention values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "page_min_severity" {
  description = "Lowest alert severity the daemon sends to the SNS topic. \"critical\" (the City's rule, and config/example.toml's): the last path to the datacenter down (VpnUnreachable, or ConnectionDown with no other connection carrying traffic), or a path-down warning (TunnelDown, ConnectionDown while another connection carries traffic, SharedTargetsDown) still firing after escalate_after. \"warning\": every warning as well, at once (one tunnel down, flapping, lossy, slow, EC2 API trouble). Alerts below it go to the journal only, and from there to CloudWatch Logs."
  type        = string
  default     = "critical"

  validation {
    condition     = contains(["warning", "critical"], var.page_min_severity)
    error_message = "page_min_severity must be \"warning\" or \"critical\"."
  }
}

variable "escalate_after" {
  description = "How long a path-down warning (one tunnel, or one connection while another carries traffic) fires before the daemon re-sends it as critical, which reaches the topic under page_min_severity = \"critical\". \"0s\" never escalates. A duration such as \"15m\", at most 1 day."
  type        = string
  default     = "15m"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.escalate_after)) && try(tonumber(regex("^[0-9]+", var.escalate_after)) * lookup({ s = 1, m = 60, h = 3600 }, regex("[smh]$", var.escalate_after)) <= 86400, false)
    error_message = "escalate_after must be a whole number of seconds, minutes or hours such as \"15m\", at most 1 day (\"24h\")."
  }
}

variable "runbook_url" {
  description = "Base URL of the runbook (docs/runbook.md as your NOC reads it); pages link to \"<runbook_url>#<alert>\". Null keeps the daemon's default, a relative path."
  type        = string
  default     = null

  validation {
    condition     = var.runbook_url == null || can(regex("^https?://[^\\s]+$", var.runbook_url))
    error_message = "runbook_url must be an http:// or https:// URL without spaces."
  }
}

variable "maintenance_apply" {
  description = "What the daemon does with AWS's pending tunnel endpoint maintenance ([maintenance] apply): \"never\" (only reads it), \"dry-run\" (decides and shows, calls nothing) or \"when-safe\" (calls ReplaceVpnTunnel inside a window when the rest of the VPN is healthy). Only \"when-safe\" gives the role ec2:ReplaceVpnTunnel; the connections need tunnel endpoint lifecycle control enabled."
  type        = string
  default     = "never"

  validation {
    condition     = contains(["never", "dry-run", "when-safe"], var.maintenance_apply)
    error_message = "maintenance_apply must be \"never\", \"dry-run\" or \"when-safe\"."
  }
}

variable "maintenance_windows" {
  description = "Weekly windows in which the daemon may apply pending maintenance, in maintenance_timezone's local time: \"Sun 02:00-05:00\", \"Sat-Sun 23:00-01:00\", \"daily 03:00-04:00\". Used unless maintenance_apply is \"never\"."
  type        = list(string)
  default     = ["Sun 02:00-05:00"]
}

variable "maintenance_timezone" {
  description = "The IANA time zone of maintenance_windows, e.g. \"Europe/Paris\" (the daemon carries the zone database; the instance needs no tzdata)."
  type        = string
  default     = "UTC"
}

# ---------------------------------------------------------------------------------------
# Who may talk to it

variable "datacenter_cidrs" {
  description = "Datacenter networks allowed to send ICMP to the instance: SiteScope's existing ping rule, and ICMP errors from the datacenter's routers. The daemon's own echo requests may go to these networks and to every target."
  type        = list(string)

  validation {
    condition     = length(var.datacenter_cidrs) > 0 && alltrue([for c in var.datacenter_cidrs : can(cidrnetmask(c)) && try(cidrsubnet(c, 0, 0) == c, false)])
    error_message = "datacenter_cidrs must list at least one IPv4 network, written with its network address (10.20.0.0/16, not 10.20.0.5/16)."
  }
}

variable "http_reader_cidrs" {
  description = "Networks allowed to read TCP 9478 (/health, /status, /metrics): SiteScope's URL monitor and the Prometheus servers that scrape the daemon."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.http_reader_cidrs : can(cidrnetmask(c)) && try(cidrsubnet(c, 0, 0) == c, false)])
    error_message = "http_reader_cidrs must be IPv4 networks written with their network address (10.30.4.17/32, 10.30.0.0/24)."
  }
  validation {
    condition     = !contains(var.http_reader_cidrs, "0.0.0.0/0")
    error_message = "http_reader_cidrs must not be 0.0.0.0/0: /status names every tunnel and target, so list the readers."
  }
}

variable "https_egress_cidrs" {
  description = "Where the instance's outbound HTTPS may go besides the VPC itself: the public AWS endpoints of EC2, CloudWatch and SNS (and S3 for an s3:// package), and the host of an https:// package_url. The default reaches them through the subnet's NAT gateway. With interface endpoints for ec2, monitoring and sns in the VPC (and an S3 gateway endpoint in https_egress_prefix_list_ids), set []."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.https_egress_cidrs : can(cidrnetmask(c)) && try(cidrsubnet(c, 0, 0) == c, false)])
    error_message = "https_egress_cidrs must be IPv4 networks written with their network address."
  }
}

variable "https_egress_prefix_list_ids" {
  description = "Managed prefix lists the instance may reach on TCP 443, such as the S3 gateway endpoint's (pl-...)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.https_egress_prefix_list_ids : can(regex("^pl-[0-9a-f]{8,17}$", p))])
    error_message = "https_egress_prefix_list_ids must be prefix list ids such as pl-63a5400a."
  }
}

# ---------------------------------------------------------------------------------------
# Where pages go

variable "sns_topic_arn" {
  description = "The NOC's existing standard SNS topic for pages: the daemon's alerts and the CloudWatch alarms go there. Leave null and set create_sns_topic to have the module create one."
  type        = string
  default     = null

  validation {
    condition     = (var.sns_topic_arn == null) == var.create_sns_topic
    error_message = "Set exactly one of sns_topic_arn (an existing topic) and create_sns_topic = true."
  }
  validation {
    condition     = var.sns_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$", var.sns_topic_arn))
    error_message = "sns_topic_arn must be the ARN of a standard SNS topic (arn:aws:sns:REGION:ACCOUNT:NAME); FIFO topics cannot reach e-mail, SMS or HTTPS subscribers."
  }
}

variable "create_sns_topic" {
  description = "Create a standard SNS topic \"<name>-pages\" for the pages instead of using sns_topic_arn."
  type        = bool
  default     = false
}

variable "page_email" {
  description = "With create_sns_topic: an e-mail address to subscribe to the new topic. AWS sends it a confirmation mail; until someone confirms, nothing is delivered there."
  type        = string
  default     = null

  validation {
    condition     = var.page_email == null || (var.create_sns_topic && can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.page_email)))
    error_message = "page_email must be an e-mail address, and needs create_sns_topic = true (subscribe to an existing topic where it is managed)."
  }
}

variable "sns_topic_kms_key_id" {
  description = "With create_sns_topic: a customer managed KMS key to encrypt the topic. Its key policy must let cloudwatch.amazonaws.com and the instance role (output iam_role_arn) use it: the role's own policy grants nothing beyond deploy/iam-policy.json. Null leaves the topic unencrypted (CloudWatch alarms cannot publish to a topic under the AWS managed key)."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------
# Alarms

variable "create_tunnel_state_alarms" {
  description = "Create, per connection, the AWS/VPN TunnelState alarm the City uses today, as a backstop that does not depend on tunnelkeeper: it pages (through a composite alarm) only while tunnelkeeper's heartbeat is missing too, so that a tunnel never pages twice. Set false if your own code already manages it."
  type        = bool
  default     = true
}

variable "tunnel_state_alarm_when" {
  description = "When the TunnelState alarms fire: \"any_tunnel_down\" (as the City's alarm does today: redundancy lost) or \"both_tunnels_down\" (the connection lost), in either case for three 5-minute periods in a row, as AWS reports it."
  type        = string
  default     = "any_tunnel_down"

  validation {
    condition     = contains(["any_tunnel_down", "both_tunnels_down"], var.tunnel_state_alarm_when)
    error_message = "tunnel_state_alarm_when must be \"any_tunnel_down\" or \"both_tunnels_down\"."
  }
}

variable "create_auto_recovery_alarm" {
  description = "Create an alarm that recovers the instance (same id, private IP and volume) when EC2's system status check fails, and tells the SNS topic."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------
# The instance

variable "instance_type" {
  description = "Instance type. The daemon needs a few percent of one core and under 64 MiB; a micro type is plenty. A Graviton type (t4g.micro) needs an arm64 package."
  type        = string
  default     = "t3.micro"
}

variable "ami_id" {
  description = "AMI to boot. Null looks up Debian's newest official Debian 12 image for the instance type's architecture, which replaces the instance whenever Debian publishes a new image: pin an id in production to choose when that happens."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-([0-9a-f]{8}|[0-9a-f]{17})$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "root_volume_size" {
  description = "Root volume size in GiB (gp3, encrypted)."
  type        = number
  default     = 8

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 100
    error_message = "root_volume_size must be between 8 and 100 GiB."
  }
}

variable "root_volume_kms_key_id" {
  description = "KMS key ARN for the root volume. Null uses the account's default EBS key (aws/ebs)."
  type        = string
  default     = null
}

variable "package_url" {
  description = "Where the instance downloads the tunnelkeeper Debian package (tunnelkeeper_<version>_<arch>.deb): an s3://bucket/key object, or an https:// URL. For s3://, grant the instance role (output iam_role_arn) s3:GetObject in the bucket policy: the role itself has exactly deploy/iam-policy.json. The architecture in the file name must match the instance type's."
  type        = string

  validation {
    condition     = can(regex("^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\\s']+|https://[^\\s']+)\\.deb$", var.package_url))
    error_message = "package_url must be an s3://BUCKET/KEY or https:// URL of a .deb file, without spaces or quotes."
  }
}

variable "package_sha256" {
  description = "SHA-256 of the package (sha256sum tunnelkeeper_*.deb). The instance refuses to install anything else, so the package that runs is the one this change names."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.package_sha256))
    error_message = "package_sha256 must be 64 lower-case hex digits."
  }
}

variable "iam_role_permissions_boundary" {
  description = "ARN of a permissions boundary policy for the instance role, if your account requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource the module creates."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "How long CloudWatch Logs keeps the instance's journal (log group /<name>/journal), which holds the daemon's log and the log sink's pages."
  type        = number
  default     = 400

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs accepts, such as 30, 365 or 400."
  }
}

variable "log_kms_key_id" {
  description = "KMS key ARN for the journal's log group. Null uses CloudWatch Logs' own encryption."
  type        = string
  default     = null
}
