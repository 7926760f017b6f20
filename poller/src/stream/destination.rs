//! On-failure destinations of stream mappings: where the record of a discarded batch goes.
//!
//! `DestinationConfig.OnFailure.Destination` names an SQS queue, an SNS topic or an S3 bucket.
//! [`Destination::connect`] checks at start that it exists (a typo should stop the mapping before
//! it polls, not surface hours later when the first batch is discarded), and
//! [`Destination::deliver`] writes one record per discarded batch. The record shapes, the S3 key
//! and its timestamp come from `esm_events::failure`; this module only moves bytes.
//!
//! Delivery is at least once: the caller retries a failed delivery and moves the checkpoint only
//! after it succeeded, so an ambiguous failure (a timeout after the service accepted the call)
//! can produce a duplicate record. See "On-failure destinations" in `docs/stream-processing.md`.

use aws_sdk_s3::primitives::ByteStream;
// The SDK crates share these smithy types; the SQS crate's re-exports serve SNS and S3 errors too.
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use esm_events::failure::StreamFailureRecord;

use crate::error::Error;

/// A connected on-failure destination.
#[derive(Clone, Debug)]
pub struct Destination {
    arn: String,
    target: Target,
}

/// The client and the resolved names each service's write call needs.
#[derive(Clone, Debug)]
enum Target {
    Sqs {
        client: aws_sdk_sqs::Client,
        queue_url: String,
    },
    /// Publish takes the topic ARN, which is [`Destination::arn`].
    Sns { client: aws_sdk_sns::Client },
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
}

/// Why a delivery failed, by whether trying the same call again can succeed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Throttling, a 5xx answer, an expired or skewed signature, a timeout or a network failure
    /// (after the SDK's own retries): the same call can succeed later, so back off and retry.
    #[error("{0} (transient: retrying can help)")]
    Retryable(String),
    /// The destination refused the record for a reason that does not pass with time (deleted,
    /// access denied, invalid request) or the record could not be written: the same call fails
    /// the same way until someone fixes the destination or its permissions.
    #[error(
        "{0} (permanent: retrying cannot help until the destination or its permissions are fixed)"
    )]
    Permanent(String),
}

impl DeliveryError {
    /// True when retrying the same delivery can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable(_))
    }
}

impl Destination {
    /// Parse `arn`, build a client for its region (an S3 bucket ARN has none: the bucket's own
    /// region, found with HeadBucket, else `sdk`'s) with `sdk`'s credentials and endpoint
    /// overrides, and check that the destination exists. Fails with [`Error::Source`] naming
    /// the ARN.
    pub async fn connect(sdk: &aws_config::SdkConfig, arn: &str) -> Result<Destination, Error> {
        let target = match DestinationArn::parse(arn).map_err(Error::Source)? {
            DestinationArn::Sqs {
                region,
                account,
                queue,
            } => {
                let client = aws_sdk_sqs::Client::from_conf(
                    aws_sdk_sqs::config::Builder::from(sdk)
                        .region(aws_sdk_sqs::config::Region::new(region.to_owned()))
                        .build(),
                );
                let queue_url = client
                    .get_queue_url()
                    .queue_name(queue)
                    .queue_owner_aws_account_id(account)
                    .send()
                    .await
                    .map_err(|e| {
                        let missing = e
                            .as_service_error()
                            .is_some_and(|s| s.is_queue_does_not_exist());
                        connect_error(arn, "GetQueueUrl", &e, missing)
                    })?
                    .queue_url
                    .unwrap_or_default();
                Target::Sqs { client, queue_url }
            }
            DestinationArn::Sns { region } => {
                let client = aws_sdk_sns::Client::from_conf(
                    aws_sdk_sns::config::Builder::from(sdk)
                        .region(aws_sdk_sns::config::Region::new(region.to_owned()))
                        .build(),
                );
                client
                    .get_topic_attributes()
                    .topic_arn(arn)
                    .send()
                    .await
                    .map_err(|e| {
                        let missing = e
                            .as_service_error()
                            .is_some_and(|s| s.is_not_found_exception());
                        connect_error(arn, "GetTopicAttributes", &e, missing)
                    })?;
                Target::Sns { client }
            }
            DestinationArn::S3 { bucket } => {
                let mut client = s3_client(sdk, None);
                let mut answer = client.head_bucket().bucket(bucket).send().await;
                // S3 answers 301 with the bucket's region when asked in the wrong one.
                if let Some(region) = answer.as_ref().err().and_then(bucket_region_redirect) {
                    client = s3_client(sdk, Some(region));
                    answer = client.head_bucket().bucket(bucket).send().await;
                }
                answer.map_err(|e| {
                    let missing = e.as_service_error().is_some_and(|s| s.is_not_found());
                    connect_error(arn, "HeadBucket", &e, missing)
                })?;
                Target::S3 {
                    client,
                    bucket: bucket.to_owned(),
                }
            }
        };
        Ok(Destination {
            arn: arn.to_owned(),
            target,
        })
    }

    /// Write the record of one discarded batch: the JSON record as the SQS message body or the
    /// SNS `Message`; for S3 an object with the record plus `payload` (the invocation event as
    /// the function received it), under `aws/lambda/<mapping_uuid>/<shardId>/YYYY/MM/DD/…-<uuid>`.
    ///
    /// SNS limits messages to 256 KB. AWS drops the payload to stay under it; our SNS record never
    /// carries the payload (AWS's doesn't either), and without it the record is about 1 KB, so
    /// the limit cannot be reached.
    pub async fn deliver(
        &self,
        record: &StreamFailureRecord,
        payload: &[u8],
        mapping_uuid: &str,
    ) -> Result<(), DeliveryError> {
        let unwritable = |e: esm_events::Error| {
            DeliveryError::Permanent(format!(
                "on-failure destination {}: the record cannot be written: {e}",
                self.arn
            ))
        };
        match &self.target {
            Target::Sqs { client, queue_url } => {
                client
                    .send_message()
                    .queue_url(queue_url)
                    .message_body(record.to_json().map_err(unwritable)?)
                    .send()
                    .await
                    .map_err(|e| self.delivery_error("SendMessage", &e))?;
            }
            Target::Sns { client } => {
                client
                    .publish()
                    .topic_arn(&self.arn)
                    .message(record.to_json().map_err(unwritable)?)
                    .send()
                    .await
                    .map_err(|e| self.delivery_error("Publish", &e))?;
            }
            Target::S3 { client, bucket } => {
                let key = record
                    .s3_object_key(mapping_uuid, &uuid::Uuid::new_v4().to_string())
                    .map_err(unwritable)?;
                let body = record.to_s3_json(payload).map_err(unwritable)?;
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type("application/json")
                    .body(ByteStream::from(body.into_bytes()))
                    .send()
                    .await
                    .map_err(|e| self.delivery_error("PutObject", &e))?;
            }
        }
        Ok(())
    }

    /// The destination ARN as configured.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    fn delivery_error<E>(&self, operation: &str, error: &SdkError<E>) -> DeliveryError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = format!(
            "on-failure destination {}: {operation} failed: {}",
            self.arn,
            DisplayErrorContext(error)
        );
        if is_retryable(error) {
            DeliveryError::Retryable(message)
        } else {
            DeliveryError::Permanent(message)
        }
    }
}

/// An S3 client from `sdk`, in `region` when given.
fn s3_client(sdk: &aws_config::SdkConfig, region: Option<String>) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(region) = region {
        config = config.region(aws_sdk_s3::config::Region::new(region));
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// The bucket's region from a 301 answer to HeadBucket (`x-amz-bucket-region`).
fn bucket_region_redirect<E>(error: &SdkError<E>) -> Option<String> {
    let response = error.raw_response()?;
    if response.status().as_u16() != 301 {
        return None;
    }
    response
        .headers()
        .get("x-amz-bucket-region")
        .map(str::to_owned)
}

fn connect_error<E>(arn: &str, operation: &str, error: &SdkError<E>, missing: bool) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if missing {
        Error::Source(format!(
            "on-failure destination {arn} does not exist ({operation}: {})",
            error.code().unwrap_or("not found")
        ))
    } else {
        Error::Source(format!(
            "on-failure destination {arn}: {operation} failed: {}",
            DisplayErrorContext(error)
        ))
    }
}

/// Whether an SDK error can pass by itself. Network failures and timeouts can; an unreadable
/// answer is treated like a 5xx; a request the SDK could not build, or a client misconfigured
/// by the user (`is_user`), cannot.
fn is_retryable<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    match error {
        SdkError::ConstructionFailure(_) => false,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(service) => {
            is_retryable_answer(service.raw().status().as_u16(), service.err().code())
        }
        _ => true,
    }
}

/// Error codes that pass with time although some come with a 4xx status: throttling (each
/// service has its own spelling), S3's `RequestTimeout` (400), and signatures that the SDK
/// fixes on the next attempt (expired credentials refresh, clock skew is corrected).
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "Throttled",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "KMSThrottling",
    "KmsThrottled",
    "RequestTimeout",
    "RequestTimeoutException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "RequestTimeTooSkewed",
];

/// The pure part of [`is_retryable`]: a service's answer, by HTTP status and error code.
fn is_retryable_answer(status: u16, code: Option<&str>) -> bool {
    status >= 500 || status == 429 || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
}

/// A parsed `DestinationConfig.OnFailure.Destination`.
#[derive(Debug, PartialEq, Eq)]
enum DestinationArn<'a> {
    /// `arn:PARTITION:sqs:REGION:ACCOUNT:QUEUE`.
    Sqs {
        region: &'a str,
        account: &'a str,
        queue: &'a str,
    },
    /// `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC`.
    Sns { region: &'a str },
    /// `arn:PARTITION:s3:::BUCKET`.
    S3 { bucket: &'a str },
}

impl<'a> DestinationArn<'a> {
    /// Parse a destination ARN; the error names the ARN and says what is wrong.
    fn parse(arn: &'a str) -> Result<DestinationArn<'a>, String> {
        let invalid = |why: &str| format!("on-failure destination {arn:?}: {why}");
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ["arn", _partition, service, region, account, resource] = parts[..] else {
            return Err(invalid(
                "not an ARN (expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)",
            ));
        };
        let regional = !region.is_empty() && !account.is_empty();
        let plain_name = !resource.is_empty() && !resource.contains(['/', ':']);
        match service {
            // Lambda documents standard queues and topics only ("Standard Amazon SQS queue or
            // standard Amazon SNS topic", services-ddb-params); a FIFO send without a message
            // group id would fail on every batch.
            "sqs" | "sns" if resource.ends_with(".fifo") => Err(invalid(
                "FIFO queues and topics are not supported as on-failure destinations; use a standard one",
            )),
            "sqs" if regional && plain_name => Ok(DestinationArn::Sqs {
                region,
                account,
                queue: resource,
            }),
            "sqs" => Err(invalid("expected arn:PARTITION:sqs:REGION:ACCOUNT:QUEUE")),
            "sns" if regional && plain_name => Ok(DestinationArn::Sns { region }),
            "sns" => Err(invalid("expected arn:PARTITION:sns:REGION:ACCOUNT:TOPIC")),
            "s3" if region.is_empty() && account.is_empty() && plain_name => {
                Ok(DestinationArn::S3 { bucket: resource })
            }
            "s3" => Err(invalid("expected a bucket ARN, arn:PARTITION:s3:::BUCKET")),
            other => Err(invalid(&format!(
                "service {other:?} is not supported; use an SQS queue, an SNS topic or an S3 bucket"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_destination_kind() {
        assert_eq!(
            DestinationArn::parse("arn:aws:sqs:eu-west-1:123456789012:dlq"),
            Ok(DestinationArn::Sqs {
                region: "eu-west-1",
                account: "123456789012",
                queue: "dlq"
            })
        );
        assert_eq!(
            DestinationArn::parse("arn:aws:sns:us-east-2:123456789012:alerts"),
            Ok(DestinationArn::Sns {
                region: "us-east-2"
            })
        );
        assert_eq!(
            DestinationArn::parse("arn:aws-cn:s3:::failed-batches"),
            Ok(DestinationArn::S3 {
                bucket: "failed-batches"
            })
        );
    }

    #[test]
    fn rejects_with_a_reason_naming_the_arn() {
        for (arn, needle) in [
            ("dlq", "not an ARN"),
            ("arn:aws:sqs:us-east-1:1:dlq.fifo", "FIFO"),
            ("arn:aws:sns:us-east-1:1:t.fifo", "FIFO"),
            ("arn:aws:sqs::1:dlq", "sqs:REGION:ACCOUNT:QUEUE"),
            ("arn:aws:sns:us-east-1:1:", "sns:REGION:ACCOUNT:TOPIC"),
            ("arn:aws:s3:::bucket/prefix", "bucket ARN"),
            ("arn:aws:s3:us-east-1:1:bucket", "bucket ARN"),
            (
                "arn:aws:lambda:us-east-1:1:function:f",
                "service \"lambda\"",
            ),
        ] {
            let err = DestinationArn::parse(arn).unwrap_err();
            assert!(err.contains(needle) && err.contains(arn), "{arn}: {err}");
        }
    }

    #[test]
    fn throttles_and_server_errors_are_retryable_client_errors_are_not() {
        assert!(is_retryable_answer(500, Some("InternalError")));
        assert!(is_retryable_answer(503, None));
        assert!(is_retryable_answer(429, None));
        assert!(is_retryable_answer(400, Some("RequestThrottled")));
        assert!(is_retryable_answer(400, Some("KMSThrottling")));
        assert!(is_retryable_answer(400, Some("RequestTimeout")));
        assert!(is_retryable_answer(403, Some("ExpiredToken")));
        assert!(!is_retryable_answer(
            400,
            Some("AWS.SimpleQueueService.NonExistentQueue")
        ));
        assert!(!is_retryable_answer(403, Some("AccessDenied")));
        assert!(!is_retryable_answer(404, Some("NoSuchBucket")));
        assert!(!is_retryable_answer(400, Some("InvalidParameter")));
        assert!(!is_retryable_answer(400, None));
    }
}
