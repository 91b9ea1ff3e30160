//! Why EC2 does not answer, in the words a page needs: the error kinds the shell sorts SDK
//! failures into (`AwsErrorKind`), turned into a cause and what to look at. An access
//! denial names the action the role is missing, read from EC2's message where it says so.

use crate::messages::AwsErrorKind;

/// The call the poller makes, and so the action a denial is about when EC2 does not say.
const POLLED_ACTION: &str = "ec2:DescribeVpnConnections";

/// Describes a failure of the EC2 poller: the cause first, then where to look.
pub fn describe(kind: AwsErrorKind, message: &str) -> String {
    match kind {
        AwsErrorKind::Network => format!(
            "no route to the EC2 endpoint ({message}): check the NAT gateway or the EC2 VPC endpoint, security groups and NACLs"
        ),
        AwsErrorKind::Timeout => "EC2 does not answer in time: no route to the endpoint (NAT gateway, EC2 VPC endpoint, security groups) or a proxy dropping the calls".into(),
        AwsErrorKind::Throttled => "EC2 throttles the calls (RequestLimitExceeded): the account's API rate is shared by every tool in the Region".into(),
        AwsErrorKind::Auth => auth(message),
        AwsErrorKind::ServerError => format!("EC2 answers with server errors ({message})"),
        AwsErrorKind::Unparsable => "EC2's answers cannot be read".into(),
        AwsErrorKind::NotFound => format!("EC2 does not know a configured connection ({message})"),
        AwsErrorKind::Other => format!("EC2 calls fail ({message})"),
    }
}

/// An access denial: expired or missing credentials, or a role that may not call the
/// action (its IAM policy, or a service control policy over the account).
fn auth(message: &str) -> String {
    let credentials = [
        "InvalidClientTokenId",
        "ExpiredToken",
        "RequestExpired",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "credential",
    ];
    if credentials.iter().any(|c| message.contains(c)) && !message.contains("not authorized") {
        return format!("no valid AWS credentials ({message}): check the instance role and the instance metadata service");
    }
    let action = message
        .split("perform: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_end_matches(['.', ',']))
        .filter(|a| a.contains(':'))
        .unwrap_or(POLLED_ACTION);
    let by = if message.contains("service control policy") {
        "a service control policy denies it"
    } else if message.contains("explicit deny") {
        "an explicit deny in a policy"
    } else {
        "the instance role's IAM policy lacks it (deploy/iam-policy.json), or a service control policy denies it"
    };
    format!("access denied: the role may not call {action}: {by}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_names_its_cause() {
        let rows: [(AwsErrorKind, &str, &str); 7] = [
            (
                AwsErrorKind::Network,
                "cannot reach the endpoint: connection refused",
                "no route to the EC2 endpoint (cannot reach the endpoint: connection refused)",
            ),
            (AwsErrorKind::Timeout, "no answer within the timeout", "EC2 does not answer in time"),
            (AwsErrorKind::Throttled, "HTTP 503 RequestLimitExceeded: Request limit exceeded.", "EC2 throttles the calls"),
            (
                AwsErrorKind::Auth,
                "HTTP 403 UnauthorizedOperation: You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/tunnelkeeper/i-0abc is not authorized to perform: ec2:DescribeVpnConnections because no identity-based policy allows the ec2:DescribeVpnConnections action",
                "access denied: the role may not call ec2:DescribeVpnConnections: the instance role's IAM policy lacks it",
            ),
            (
                AwsErrorKind::Auth,
                "HTTP 403 UnauthorizedOperation: User: arn:aws:sts::1:assumed-role/t/i is not authorized to perform: ec2:DescribeVpnConnections with an explicit deny in a service control policy",
                "access denied: the role may not call ec2:DescribeVpnConnections: a service control policy denies it",
            ),
            (
                AwsErrorKind::Auth,
                "HTTP 403 UnauthorizedOperation: You are not authorized to perform this operation.",
                "access denied: the role may not call ec2:DescribeVpnConnections",
            ),
            (
                AwsErrorKind::Auth,
                "HTTP 401 AuthFailure: AWS was not able to validate the provided access credentials",
                "no valid AWS credentials",
            ),
        ];
        for (kind, message, want) in rows {
            let got = describe(kind, message);
            assert!(got.starts_with(want), "{kind:?} {message:?}: {got}");
        }
    }
}
