//! On-failure destination records of Kinesis and DynamoDB Streams mappings.
//!
//! When a batch is discarded (retries exhausted or records too old), Lambda sends one invocation
//! record describing it. SQS queues and SNS topics receive it as the message body:
//!
//! ```json
//! {"requestContext":{"requestId":"c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
//!                    "functionArn":"arn:aws:lambda:us-east-2:123456789012:function:myfunction",
//!                    "condition":"RetryAttemptsExhausted","approximateInvokeCount":1},
//!  "responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},
//!  "version":"1.0","timestamp":"2019-11-14T00:38:06.021Z",
//!  "KinesisBatchInfo":{"shardId":"shardId-000000000001","startSequenceNumber":"4960...4722",
//!                      "endSequenceNumber":"4960...5186",
//!                      "approximateArrivalOfFirstRecord":"2019-11-14T00:38:04.835Z",
//!                      "approximateArrivalOfLastRecord":"2019-11-14T00:38:05.580Z",
//!                      "batchSize":500,"streamArn":"arn:aws:kinesis:us-east-2:123456789012:stream/mystream"}}
//! ```
//!
//! S3 buckets receive the same members plus `payload`, the invocation event as a JSON string,
//! under the key `aws/lambda/<ESM-UUID>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>`.

use serde::Serialize;

use crate::Error;
use crate::timestamp::{rfc3339_millis, rfc3339_seconds, s3_key_time};

/// One on-failure invocation record for a stream mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailureRecord {
    /// Which stream service; decides the batch-info key and the precision of arrival times.
    pub stream: StreamKind,
    /// Request id of the last invocation (a fresh id when the batch was never invoked).
    pub request_id: String,
    /// The function ARN, as the mapping names the function (unqualified in AWS recordings).
    pub function_arn: String,
    /// Why the batch was discarded, with the last response for exhausted retries.
    pub condition: FailureCondition,
    /// Invocations of this batch (1 + retries); 1 also when it expired before any invocation.
    pub approximate_invoke_count: u64,
    /// When the record was produced, in epoch milliseconds; written with milliseconds.
    pub timestamp_ms: i64,
    /// The discarded records.
    pub batch: StreamBatchInfo,
}

/// The stream service of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Kinesis Data Streams: `KinesisBatchInfo`, arrival times with milliseconds.
    Kinesis,
    /// DynamoDB Streams: `DDBStreamBatchInfo`, arrival times with whole seconds.
    DynamoDb,
}

/// Why a batch was discarded.
///
/// The response context exists only for exhausted retries: AWS omits `responseContext` entirely
/// for `RecordAgeExceeded`, so that variant cannot carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCondition {
    /// `RetryAttemptsExhausted`, with the response of the last invocation.
    RetryAttemptsExhausted(ResponseContext),
    /// `RecordAgeExceeded` (`MaximumRecordAgeInSeconds`).
    RecordAgeExceeded,
}

/// `responseContext` of the last invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    /// HTTP status of the invoke, 200 when the function ran.
    pub status_code: u16,
    /// `X-Amz-Executed-Version`, e.g. `$LATEST`.
    pub executed_version: String,
    /// `X-Amz-Function-Error` (`"Unhandled"`), or `None` (written as `null`) when the function
    /// returned normally and the batch failed through partial batch responses.
    pub function_error: Option<String>,
}

/// `KinesisBatchInfo` / `DDBStreamBatchInfo`: where the discarded records are in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBatchInfo {
    /// The shard of the records.
    pub shard_id: String,
    /// Sequence number of the first discarded record.
    pub start_sequence_number: String,
    /// Sequence number of the last discarded record.
    pub end_sequence_number: String,
    /// Arrival time of the first record, epoch milliseconds.
    pub approximate_arrival_of_first_record_ms: i64,
    /// Arrival time of the last record, epoch milliseconds.
    pub approximate_arrival_of_last_record_ms: i64,
    /// Number of discarded records.
    pub batch_size: u64,
    /// The stream ARN.
    pub stream_arn: String,
}

impl StreamFailureRecord {
    /// The record as an SQS message body or SNS `Message`.
    ///
    /// Keys in AWS's order: `requestContext`, `responseContext` (not for `RecordAgeExceeded`),
    /// `version`, `timestamp`, `KinesisBatchInfo` | `DDBStreamBatchInfo`.
    pub fn to_json(&self) -> Result<String, Error> {
        Ok(serde_json::to_string(&self.wire(None)?)?)
    }

    /// The body of the S3 object: the members of [`to_json`](Self::to_json) followed by
    /// `payload`, the invocation event exactly as sent to the function, as a JSON string.
    pub fn to_s3_json(&self, payload: &[u8]) -> Result<String, Error> {
        let payload = std::str::from_utf8(payload).map_err(|_| Error::PayloadNotUtf8)?;
        Ok(serde_json::to_string(&self.wire(Some(payload))?)?)
    }

    /// The S3 object key,
    /// `aws/lambda/<mapping_uuid>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<object_uuid>`, with the
    /// time taken from the record's `timestamp` (UTC). `object_uuid` is a fresh random UUID.
    pub fn s3_object_key(&self, mapping_uuid: &str, object_uuid: &str) -> Result<String, Error> {
        Ok(format!(
            "aws/lambda/{mapping_uuid}/{shard}/{time}-{object_uuid}",
            shard = self.batch.shard_id,
            time = s3_key_time(self.timestamp_ms)?,
        ))
    }

    fn wire<'a>(&'a self, payload: Option<&'a str>) -> Result<Wire<'a>, Error> {
        let (condition, response_context) = match &self.condition {
            FailureCondition::RetryAttemptsExhausted(response) => {
                ("RetryAttemptsExhausted", Some(response))
            }
            FailureCondition::RecordAgeExceeded => ("RecordAgeExceeded", None),
        };
        let arrival = match self.stream {
            StreamKind::Kinesis => rfc3339_millis,
            StreamKind::DynamoDb => rfc3339_seconds,
        };
        let batch = &self.batch;
        let batch_info = BatchInfoWire {
            shard_id: &batch.shard_id,
            start_sequence_number: &batch.start_sequence_number,
            end_sequence_number: &batch.end_sequence_number,
            approximate_arrival_of_first_record: arrival(
                batch.approximate_arrival_of_first_record_ms,
            )?,
            approximate_arrival_of_last_record: arrival(
                batch.approximate_arrival_of_last_record_ms,
            )?,
            batch_size: batch.batch_size,
            stream_arn: &batch.stream_arn,
        };
        let (kinesis_batch_info, ddb_stream_batch_info) = match self.stream {
            StreamKind::Kinesis => (Some(batch_info), None),
            StreamKind::DynamoDb => (None, Some(batch_info)),
        };
        Ok(Wire {
            request_context: RequestContextWire {
                request_id: &self.request_id,
                function_arn: &self.function_arn,
                condition,
                approximate_invoke_count: self.approximate_invoke_count,
            },
            response_context,
            version: "1.0",
            timestamp: rfc3339_millis(self.timestamp_ms)?,
            kinesis_batch_info,
            ddb_stream_batch_info,
            payload,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    request_context: RequestContextWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_context: Option<&'a ResponseContext>,
    version: &'static str,
    timestamp: String,
    #[serde(rename = "KinesisBatchInfo", skip_serializing_if = "Option::is_none")]
    kinesis_batch_info: Option<BatchInfoWire<'a>>,
    #[serde(rename = "DDBStreamBatchInfo", skip_serializing_if = "Option::is_none")]
    ddb_stream_batch_info: Option<BatchInfoWire<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContextWire<'a> {
    request_id: &'a str,
    function_arn: &'a str,
    condition: &'static str,
    approximate_invoke_count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchInfoWire<'a> {
    shard_id: &'a str,
    start_sequence_number: &'a str,
    end_sequence_number: &'a str,
    approximate_arrival_of_first_record: String,
    approximate_arrival_of_last_record: String,
    batch_size: u64,
    stream_arn: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stream: StreamKind, condition: FailureCondition) -> StreamFailureRecord {
        StreamFailureRecord {
            stream,
            request_id: "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5".to_owned(),
            function_arn: "arn:aws:lambda:us-east-2:123456789012:function:myfunction".to_owned(),
            condition,
            approximate_invoke_count: 1,
            timestamp_ms: 1_573_691_886_021,
            batch: StreamBatchInfo {
                shard_id: "shardId-000000000001".to_owned(),
                start_sequence_number: "1".to_owned(),
                end_sequence_number: "2".to_owned(),
                approximate_arrival_of_first_record_ms: 1_573_691_884_835,
                approximate_arrival_of_last_record_ms: 1_573_691_885_580,
                batch_size: 2,
                stream_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/mystream".to_owned(),
            },
        }
    }

    #[test]
    fn record_age_exceeded_has_no_response_context() {
        let json = record(StreamKind::Kinesis, FailureCondition::RecordAgeExceeded)
            .to_json()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["requestContext"]["condition"], "RecordAgeExceeded");
        assert!(value.get("responseContext").is_none());
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["requestContext", "version", "timestamp", "KinesisBatchInfo"]
        );
    }

    #[test]
    fn dynamodb_arrival_times_have_second_precision() {
        let response = ResponseContext {
            status_code: 200,
            executed_version: "$LATEST".to_owned(),
            function_error: None,
        };
        let json = record(
            StreamKind::DynamoDb,
            FailureCondition::RetryAttemptsExhausted(response),
        )
        .to_json()
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(value.get("KinesisBatchInfo").is_none());
        let info = &value["DDBStreamBatchInfo"];
        assert_eq!(
            info["approximateArrivalOfFirstRecord"],
            "2019-11-14T00:38:04Z"
        );
        assert_eq!(
            info["approximateArrivalOfLastRecord"],
            "2019-11-14T00:38:05Z"
        );
        assert_eq!(value["timestamp"], "2019-11-14T00:38:06.021Z");
        assert_eq!(
            value["responseContext"]["functionError"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn s3_key_is_derived_from_the_record_timestamp() {
        let key = record(StreamKind::Kinesis, FailureCondition::RecordAgeExceeded)
            .s3_object_key(
                "f89f8514-cdd9-4602-9e1f-01a5b77d449b",
                "0a1b2c3d-0000-4000-8000-000000000000",
            )
            .unwrap();
        assert_eq!(
            key,
            "aws/lambda/f89f8514-cdd9-4602-9e1f-01a5b77d449b/shardId-000000000001/\
             2019/11/14/2019-11-14T00.38.06-0a1b2c3d-0000-4000-8000-000000000000"
        );
    }

    #[test]
    fn s3_body_rejects_non_utf8_payloads() {
        let record = record(StreamKind::Kinesis, FailureCondition::RecordAgeExceeded);
        assert!(matches!(
            record.to_s3_json(&[0xff, 0xfe]),
            Err(Error::PayloadNotUtf8)
        ));
    }
}
