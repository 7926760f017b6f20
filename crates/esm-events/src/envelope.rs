//! Invocation payloads built from records that were already serialized.
//!
//! A poller serializes each record once (`serde_json::to_vec(&record)`), uses the byte length to
//! decide whether the record still fits in the batch, and finally joins the kept records. The
//! length prediction is exact, so the 6 MB limit can be honoured without serializing twice:
//!
//! ```
//! use esm_events::envelope::{Envelope, MAX_PAYLOAD_BYTES};
//!
//! let records = [br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()];
//! let envelope = Envelope::records();
//! let len = envelope.payload_len(records.iter().map(Vec::len));
//! assert!(len <= MAX_PAYLOAD_BYTES);
//! let payload = envelope.payload(&records);
//! assert_eq!(payload, br#"{"Records":[{"a":1},{"b":2}]}"#);
//! assert_eq!(payload.len(), len);
//! ```

use serde::Serialize;
use serde_json::{Map, Value};

use crate::Error;
use crate::timestamp::rfc3339_seconds;

/// The largest synchronous invocation payload Lambda accepts: 6 MB = 6,291,456 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 6_291_456;

const HEAD: &[u8] = br#"{"Records":["#;
const SEPARATOR: &[u8] = b",";

/// The JSON around the records array of one invocation.
///
/// Everything after the records is rendered once, when the envelope is built, so that
/// [`payload_len`](Envelope::payload_len) can be exact and [`payload`](Envelope::payload) is a
/// plain copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Bytes from the closing `]` of the records array to the end of the payload.
    tail: Vec<u8>,
}

impl Envelope {
    /// The ordinary event, `{"Records":[...]}`, used by SQS, Kinesis and DynamoDB Streams.
    pub fn records() -> Self {
        Self {
            tail: b"]}".to_vec(),
        }
    }

    /// The tumbling-window event for Kinesis and DynamoDB Streams: `Records` followed by `window`,
    /// `state`, `shardId`, `eventSourceARN`, `isFinalInvokeForWindow`, `isWindowTerminatedEarly`.
    ///
    /// Fails only when a window bound cannot be written as an RFC 3339 timestamp.
    pub fn tumbling_window(window: &TumblingWindow) -> Result<Self, Error> {
        #[derive(Serialize)]
        struct Bounds {
            start: String,
            end: String,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Tail<'a> {
            window: Bounds,
            state: &'a Map<String, Value>,
            shard_id: &'a str,
            #[serde(rename = "eventSourceARN")]
            event_source_arn: &'a str,
            is_final_invoke_for_window: bool,
            is_window_terminated_early: bool,
        }
        let object = serde_json::to_vec(&Tail {
            window: Bounds {
                start: rfc3339_seconds(window.start_ms)?,
                end: rfc3339_seconds(window.end_ms)?,
            },
            state: &window.state,
            shard_id: &window.shard_id,
            event_source_arn: &window.event_source_arn,
            is_final_invoke_for_window: window.is_final_invoke_for_window,
            is_window_terminated_early: window.is_window_terminated_early,
        })?;
        // `object` is `{"window":...}`; the payload continues the outer object after the records
        // array, so replace the opening brace with `],`.
        let mut tail = Vec::with_capacity(object.len() + 1);
        tail.extend_from_slice(b"],");
        tail.extend_from_slice(&object[1..]);
        Ok(Self { tail })
    }

    /// The exact byte length of [`payload`](Envelope::payload) for records of these lengths.
    pub fn payload_len(&self, record_lens: impl IntoIterator<Item = usize>) -> usize {
        let (count, total) = record_lens
            .into_iter()
            .fold((0usize, 0usize), |(count, total), len| {
                (count + 1, total + len)
            });
        self.payload_len_of(count, total)
    }

    /// The exact byte length of [`payload`](Envelope::payload) for `count` records of `record_bytes`
    /// bytes in all: what [`payload_len`](Envelope::payload_len) gives, for a caller that keeps a
    /// running total instead of every length.
    pub fn payload_len_of(&self, count: usize, record_bytes: usize) -> usize {
        let separators = count.saturating_sub(1) * SEPARATOR.len();
        HEAD.len() + record_bytes + separators + self.tail.len()
    }

    /// Joins serialized records into the invocation payload.
    ///
    /// Each record must be one compact JSON value, as produced by `serde_json::to_vec` of a
    /// record type of this crate; the bytes are copied unchanged.
    pub fn payload<R: AsRef<[u8]>>(&self, records: &[R]) -> Vec<u8> {
        let mut payload = Vec::with_capacity(
            self.payload_len(records.iter().map(|record| record.as_ref().len())),
        );
        payload.extend_from_slice(HEAD);
        for (index, record) in records.iter().enumerate() {
            if index > 0 {
                payload.extend_from_slice(SEPARATOR);
            }
            payload.extend_from_slice(record.as_ref());
        }
        payload.extend_from_slice(&self.tail);
        payload
    }
}

/// The per-invocation context of a tumbling window (`TumblingWindowInSeconds` > 0).
#[derive(Debug, Clone, PartialEq)]
pub struct TumblingWindow {
    /// Window start in epoch milliseconds; written with second precision (`2020-12-09T07:04:00Z`).
    pub start_ms: i64,
    /// Window end in epoch milliseconds; written with second precision.
    pub end_ms: i64,
    /// The state the function returned on its previous invocation in this window; empty at the
    /// start of a window.
    pub state: Map<String, Value>,
    /// The shard the records come from.
    pub shard_id: String,
    /// The stream ARN.
    pub event_source_arn: String,
    /// True for the final invocation that closes the window.
    pub is_final_invoke_for_window: bool,
    /// True when the window ended early because the state exceeded 1 MB.
    pub is_window_terminated_early: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window() -> TumblingWindow {
        let mut state = Map::new();
        state.insert("1".to_owned(), Value::from(282));
        TumblingWindow {
            start_ms: 1_607_497_440_000,
            end_ms: 1_607_497_560_000,
            state,
            shard_id: "shardId-000000000006".to_owned(),
            event_source_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream"
                .to_owned(),
            is_final_invoke_for_window: false,
            is_window_terminated_early: false,
        }
    }

    #[test]
    fn empty_batch_is_still_a_records_event() {
        let envelope = Envelope::records();
        let empty: [&[u8]; 0] = [];
        assert_eq!(envelope.payload(&empty), br#"{"Records":[]}"#);
        assert_eq!(envelope.payload_len([]), br#"{"Records":[]}"#.len());
    }

    #[test]
    fn tumbling_window_tail_follows_the_records() {
        let envelope = Envelope::tumbling_window(&window()).unwrap();
        let payload = envelope.payload(&[br#"{"r":1}"#]);
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            concat!(
                r#"{"Records":[{"r":1}],"window":{"start":"2020-12-09T07:04:00Z","end":"2020-12-09T07:06:00Z"},"#,
                r#""state":{"1":282},"shardId":"shardId-000000000006","#,
                r#""eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream","#,
                r#""isFinalInvokeForWindow":false,"isWindowTerminatedEarly":false}"#
            )
        );
    }

    #[test]
    fn tumbling_window_rejects_unwritable_bounds() {
        let mut bad = window();
        bad.end_ms = i64::MAX;
        assert!(matches!(
            Envelope::tumbling_window(&bad),
            Err(Error::TimestampOutOfRange { millis: i64::MAX })
        ));
    }

    proptest! {
        #[test]
        fn payload_len_is_exact(
            records in proptest::collection::vec("[a-z]{0,40}", 0..20),
            windowed in any::<bool>(),
        ) {
            let records: Vec<Vec<u8>> = records
                .iter()
                .map(|text| serde_json::to_vec(text).unwrap())
                .collect();
            let envelope = if windowed {
                Envelope::tumbling_window(&window()).unwrap()
            } else {
                Envelope::records()
            };
            let payload = envelope.payload(&records);
            prop_assert_eq!(payload.len(), envelope.payload_len(records.iter().map(Vec::len)));
            // The result is one valid JSON object whose Records are the inputs.
            let parsed: Value = serde_json::from_slice(&payload).unwrap();
            let expected: Vec<Value> = records
                .iter()
                .map(|record| serde_json::from_slice(record).unwrap())
                .collect();
            prop_assert_eq!(&parsed["Records"], &Value::Array(expected));
        }
    }
}
