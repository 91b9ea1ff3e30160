# expect: Set exactly one of sns_topic_arn
sns_topic_arn = null
