//! Reading the records of an event source mapping event, the way a function would.
//!
//! Events are read as `serde_json::Value` rather than typed structs: the simulator must accept
//! whatever a poller under test sends, including shapes a typed parser would reject.

use base64::Engine as _;
use serde_json::Value;

/// An invocation payload as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) shape: Shape,
    /// For [`Shape::Plain`], one pseudo-record holding the whole payload.
    pub(crate) records: Vec<Record>,
}

/// Which kind of event arrived; it decides the success response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Not an ESM event (no `Records` array): a plain invocation.
    Plain,
    /// `{"Records":[...]}` from SQS, Kinesis or DynamoDB Streams.
    Batch,
    /// A tumbling-window batch (top-level `window` key); `previous_count` is `state.count`.
    Window { previous_count: u64 },
}

/// One record: its identifier for `batchItemFailures` and the text the rules match against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) id: Option<String>,
    pub(crate) body: String,
}

impl Event {
    pub(crate) fn parse(payload: &Value) -> Event {
        let Some(records) = payload.get("Records").and_then(Value::as_array) else {
            let body = payload.to_string();
            return Event {
                shape: Shape::Plain,
                records: vec![Record { id: None, body }],
            };
        };
        let shape = if payload.get("window").is_some() {
            let previous_count = payload
                .pointer("/state/count")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            Shape::Window { previous_count }
        } else {
            Shape::Batch
        };
        Event {
            shape,
            records: records.iter().map(Record::parse).collect(),
        }
    }

    /// True for ESM events, whose records are counted and reported by id.
    pub(crate) fn is_batch(&self) -> bool {
        self.shape != Shape::Plain
    }
}

impl Record {
    /// Id and body per source: SQS `messageId`/`body`; Kinesis `kinesis.sequenceNumber`/`data`
    /// (base64-decoded); DynamoDB `dynamodb.SequenceNumber`/the new image as JSON text (the old
    /// image, then the keys, when there is none, e.g. on REMOVE). Anything else: no id, the record's
    /// JSON text as body.
    fn parse(record: &Value) -> Record {
        let str_at = |pointer: &str| {
            record
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if let Some(id) = str_at("/messageId") {
            let body = match record.get("body") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            return Record { id: Some(id), body };
        }
        if let Some(kinesis) = record.get("kinesis") {
            let data = kinesis
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = match base64::engine::general_purpose::STANDARD.decode(data) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => data.to_owned(),
            };
            return Record {
                id: str_at("/kinesis/sequenceNumber"),
                body,
            };
        }
        if let Some(dynamodb) = record.get("dynamodb") {
            let image = ["NewImage", "OldImage", "Keys"]
                .iter()
                .find_map(|k| dynamodb.get(*k));
            let body = image.map(Value::to_string).unwrap_or_default();
            return Record {
                id: str_at("/dynamodb/SequenceNumber"),
                body,
            };
        }
        Record {
            id: None,
            body: record.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(id: &str, body: &str) -> Record {
        Record {
            id: Some(id.to_owned()),
            body: body.to_owned(),
        }
    }

    #[test]
    fn sqs_records() {
        let event = Event::parse(&json!({"Records": [
            {"messageId": "m1", "body": "hello", "eventSource": "aws:sqs"},
            {"messageId": "m2", "body": "{\"k\":1}", "eventSource": "aws:sqs"},
        ]}));
        assert_eq!(event.shape, Shape::Batch);
        assert_eq!(
            event.records,
            vec![record("m1", "hello"), record("m2", "{\"k\":1}")]
        );
    }

    #[test]
    fn kinesis_data_is_base64_decoded() {
        let event = Event::parse(&json!({"Records": [
            {"kinesis": {"sequenceNumber": "4959", "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg=="}},
            {"kinesis": {"sequenceNumber": "4960", "data": "not base64!"}},
        ]}));
        assert_eq!(
            event.records,
            vec![
                record("4959", "Hello, this is a test."),
                record("4960", "not base64!")
            ]
        );
    }

    #[test]
    fn dynamodb_body_is_the_image_as_json_text() {
        let event = Event::parse(&json!({"Records": [
            {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "111",
                "Keys": {"Id": {"N": "1"}}, "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "1"}}}},
            {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "112",
                "Keys": {"Id": {"N": "2"}}, "OldImage": {"Id": {"N": "2"}}}},
            {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "113", "Keys": {"Id": {"N": "3"}}}},
        ]}));
        assert_eq!(
            event.records,
            vec![
                record("111", r#"{"Message":{"S":"New item!"},"Id":{"N":"1"}}"#),
                record("112", r#"{"Id":{"N":"2"}}"#),
                record("113", r#"{"Id":{"N":"3"}}"#),
            ]
        );
    }

    #[test]
    fn tumbling_window_reads_the_previous_count() {
        let event = Event::parse(&json!({
            "Records": [], "window": {"start": "a", "end": "b"}, "state": {"count": 7}
        }));
        assert_eq!(event.shape, Shape::Window { previous_count: 7 });
        let first = Event::parse(&json!({"Records": [], "window": {}, "state": {}}));
        assert_eq!(first.shape, Shape::Window { previous_count: 0 });
    }

    #[test]
    fn anything_else_is_one_plain_record() {
        let event = Event::parse(&json!({"order": 1}));
        assert_eq!(event.shape, Shape::Plain);
        assert!(!event.is_batch());
        assert_eq!(
            event.records,
            vec![Record {
                id: None,
                body: r#"{"order":1}"#.to_owned()
            }]
        );
    }

    #[test]
    fn unknown_records_have_no_id() {
        let event = Event::parse(&json!({"Records": [{"foo": 1}]}));
        assert_eq!(
            event.records,
            vec![Record {
                id: None,
                body: r#"{"foo":1}"#.to_owned()
            }]
        );
    }
}
