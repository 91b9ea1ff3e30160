# expect: "AWS/" is reserved for AWS
cloudwatch_namespace = "AWS/VPN"
