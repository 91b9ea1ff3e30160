# The instance role: deploy/iam-policy.json (rendered in documents.tf with this
# deployment's namespace and topic) for the daemon, and two AWS managed policies for the
# operator: Session Manager (a shell without SSH or an open port: `aws ssm start-session`,
# then `tunnelkeeper status`, `journalctl -u tunnelkeeper`) and the CloudWatch agent, which
# ships the daemon's journal (where the log sink's pages go) to CloudWatch Logs. Nothing
# for S3: the package's bucket grants the role read access in its own policy.

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "Ec2AssumesTheRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  # A prefix: IAM names are global to the account, and the same module may run in two
  # regions.
  name_prefix          = "${var.name}-"
  description          = "tunnelkeeper on its keepalive instance: read VPN tunnel status, publish figures, page the NOC"
  assume_role_policy   = data.aws_iam_policy_document.assume_role.json
  permissions_boundary = var.iam_role_permissions_boundary
  tags                 = local.tags
}

resource "aws_iam_role_policy" "daemon" {
  name   = "tunnelkeeper"
  role   = aws_iam_role.this.id
  policy = jsonencode(local.daemon_policy)
}

resource "aws_iam_instance_profile" "this" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.this.name
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy_attachment" "cloudwatch_agent" {
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/CloudWatchAgentServerPolicy"
}

# Where the journal goes: one stream per instance, kept log_retention_days.
resource "aws_cloudwatch_log_group" "journal" {
  name              = "/${var.name}/journal"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_id
  tags              = local.tags
}
