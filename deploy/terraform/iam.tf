# The instance role: exactly deploy/iam-policy.json (rendered in documents.tf with this
# deployment's namespace and topic). Nothing for SSH, SSM or S3: the package's bucket grants
# the role read access in its own policy, and anything more is the caller's to attach,
# visibly, with the iam_role_name output.

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
