# expect: must be the ARN of a standard SNS topic
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:noc-page.fifo"
