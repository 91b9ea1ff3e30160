//! The SNS sink: one `Publish` per notification to a standard topic, with message
//! attributes that subscription filter policies can match.

use aws_sdk_sns::types::MessageAttributeValue;

use super::Deliver;
use crate::alert::engine::Notification;
use crate::alert::wording::{attributes, message, subject, PageContext};

/// Publishes notifications to an SNS standard topic.
pub struct SnsSink {
    pub client: aws_sdk_sns::Client,
    pub topic_arn: String,
    /// Runbook and host.
    pub ctx: PageContext,
}

impl Deliver for SnsSink {
    async fn deliver(&mut self, n: &Notification) -> Result<(), (&'static str, String)> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject(n))
            .message(message(n, &self.ctx));
        for (name, value) in attributes(n) {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| ("other", e.to_string()))?;
            request = request.message_attributes(name, attribute);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let (kind, message) = crate::aws::classify(&err);
                Err((kind.label(), message))
            }
        }
    }
}
