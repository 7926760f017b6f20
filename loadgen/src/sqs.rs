//! The three SQS calls loadgen makes for asynchronous invocations: SendMessage (the simulator
//! delivering a destination record) and ReceiveMessage + DeleteMessageBatch (`loadgen run`
//! collecting them), sent through [`aws_wire`] rather than the SDK.
//!
//! The AWS JSON 1.0 protocol, as the SDK sends it ([`aws_wire::JsonService`]).
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-making-api-requests-json.html>

use aws_config::SdkConfig;
use aws_wire::JsonService;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Largest answer read: ten messages of at most 1 MiB each, escaped in JSON.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// SQS calls to one endpoint, signed for one region.
#[derive(Debug)]
pub(crate) struct Sqs {
    service: JsonService,
}

/// A message as ReceiveMessage returns it (the members used here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Message {
    pub(crate) receipt_handle: String,
    pub(crate) body: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Received {
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage<'a> {
    queue_url: &'a str,
    message_body: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessage<'a> {
    queue_url: &'a str,
    max_number_of_messages: u32,
    wait_time_seconds: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteBatch<'a> {
    queue_url: &'a str,
    entries: Vec<DeleteEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteEntry<'a> {
    id: String,
    receipt_handle: &'a str,
}

impl Sqs {
    /// A client for the SQS endpoint `sdk` configures (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`,
    /// the profile's), else `https://sqs.REGION.amazonaws.com`, signing for `region` with `sdk`'s
    /// credentials.
    pub(crate) fn new(sdk: &SdkConfig, region: &str) -> Result<Sqs, String> {
        let credentials = sdk
            .credentials_provider()
            .ok_or("no AWS credentials provider is configured")?;
        let endpoint = aws_wire::configured_endpoint(sdk, "SQS")
            .unwrap_or_else(|| format!("https://sqs.{region}.amazonaws.com"));
        let service = JsonService::new(&endpoint, "sqs", region, credentials)
            .map_err(|e| format!("SQS {e}"))?;
        Ok(Sqs { service })
    }

    /// The queue URL for `queue`, a queue URL or an ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`). An
    /// ARN resolves against this client's endpoint as `ENDPOINT/ACCOUNT/NAME`, the URL form SQS
    /// (and moto) give queues.
    pub(crate) fn queue_url(&self, queue: &str) -> Result<String, String> {
        if queue.starts_with("http://") || queue.starts_with("https://") {
            return Ok(queue.to_owned());
        }
        match queue.split(':').collect::<Vec<_>>()[..] {
            ["arn", _, "sqs", _, account, name] if !account.is_empty() && !name.is_empty() => {
                Ok(format!("{}{account}/{name}", self.service.endpoint()))
            }
            _ => Err(format!(
                "`{queue}` is neither a queue URL (http:// or https://) nor an SQS queue ARN \
                 (arn:aws:sqs:REGION:ACCOUNT:NAME)"
            )),
        }
    }

    /// SendMessage of `body` to `queue_url`.
    pub(crate) async fn send_message(&self, queue_url: &str, body: &str) -> Result<(), String> {
        let request = SendMessage {
            queue_url,
            message_body: body,
        };
        self.call::<serde::de::IgnoredAny>("AmazonSQS.SendMessage", &request)
            .await
            .map(drop)
    }

    /// ReceiveMessage of up to ten messages, waiting up to `wait_seconds` (long poll, at most 20).
    pub(crate) async fn receive(
        &self,
        queue_url: &str,
        wait_seconds: u64,
    ) -> Result<Vec<Message>, String> {
        let request = ReceiveMessage {
            queue_url,
            max_number_of_messages: 10,
            wait_time_seconds: wait_seconds.min(20),
        };
        let received: Received = self.call("AmazonSQS.ReceiveMessage", &request).await?;
        Ok(received.messages)
    }

    /// DeleteMessageBatch of at most ten receipt handles. Entries SQS could not delete come back
    /// (SQS delivers them again later), so they are not reported as an error here.
    pub(crate) async fn delete_batch(
        &self,
        queue_url: &str,
        receipt_handles: &[&str],
    ) -> Result<(), String> {
        let request = DeleteBatch {
            queue_url,
            entries: receipt_handles
                .iter()
                .enumerate()
                .map(|(i, receipt_handle)| DeleteEntry {
                    id: i.to_string(),
                    receipt_handle,
                })
                .collect(),
        };
        self.call::<serde::de::IgnoredAny>("AmazonSQS.DeleteMessageBatch", &request)
            .await
            .map(drop)
    }

    async fn call<T: serde::de::DeserializeOwned + Default>(
        &self,
        action: &'static str,
        body: &impl Serialize,
    ) -> Result<T, String> {
        let body = Bytes::from(serde_json::to_vec(body).expect("requests serialise"));
        let answer = self
            .service
            .call(action, body, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| format!("{action}: {e}"))?;
        if !(200..300).contains(&answer.status) {
            let text =
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
            return Err(format!("{action}: HTTP {}: {text}", answer.status));
        }
        if answer.body.is_empty() {
            return Ok(T::default());
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| format!("{action}: unreadable answer: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

    use super::*;

    fn sqs(endpoint: &str) -> Sqs {
        let sdk = SdkConfig::builder()
            .endpoint_url(endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKID", "SECRET", None, None, "test",
            )))
            .build();
        Sqs::new(&sdk, "us-east-1").unwrap()
    }

    #[test]
    fn queue_arns_resolve_against_the_endpoint() {
        let sqs = sqs("http://127.0.0.1:5000");
        assert_eq!(
            sqs.queue_url("arn:aws:sqs:us-east-1:123456789012:done")
                .unwrap(),
            "http://127.0.0.1:5000/123456789012/done"
        );
        let url = "http://127.0.0.1:5000/123456789012/done";
        assert_eq!(sqs.queue_url(url).unwrap(), url);
        let error = sqs
            .queue_url("arn:aws:sns:us-east-1:123456789012:topic")
            .unwrap_err();
        assert!(error.contains("neither a queue URL"), "{error}");
    }
}
