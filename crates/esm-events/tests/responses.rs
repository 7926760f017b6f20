//! The response rules of `docs/aws-reference.md#partial-batch-responses` and `#tumbling-windows`, one
//! row per case. "observed" marks responses real AWS was recorded handling that way.

use esm_events::response::{
    BatchResponse, InvalidResponse, WindowResponse, parse_batch_response, parse_window_response,
};
use serde_json::{Map, Value, json};

const BATCH: [&str; 3] = ["id-1", "id-2", "id-3"];

fn in_batch(id: &str) -> bool {
    BATCH.contains(&id)
}

fn parse(body: &str) -> BatchResponse {
    parse_batch_response(body.as_bytes(), in_batch)
}

fn partial(ids: &[&str]) -> BatchResponse {
    BatchResponse::Partial(ids.iter().map(|id| (*id).to_owned()).collect())
}

#[test]
fn successes() {
    let cases = [
        (
            "",
            "empty body: function returned nothing (observed, provided.al2023)",
        ),
        ("  \n", "whitespace-only body reads as empty"),
        ("null", "null response (documented, observed)"),
        (r#""""#, "empty string (observed)"),
        ("[]", "empty list (observed)"),
        ("{}", "empty object (documented, observed SQS and Kinesis)"),
        (
            r#"{"batchItemFailures":[]}"#,
            "empty list (documented, observed)",
        ),
        (
            r#"{"batchItemFailures":null}"#,
            "null list (documented, observed)",
        ),
        (
            r#"{"statusCode":200,"body":"ok"}"#,
            "object without the key",
        ),
        (
            r#"{"BatchItemFailures":[{"itemIdentifier":"id-1"}]}"#,
            "key match is case-sensitive",
        ),
        (
            r#"{"batchItemFailures":[],"extra":{"x":1}}"#,
            "extra keys ignored",
        ),
    ];
    for (body, why) in cases {
        assert_eq!(parse(body), BatchResponse::Success, "{why}: {body:?}");
    }
}

#[test]
fn partial_failures() {
    let cases = [
        (
            r#"{"batchItemFailures":[{"itemIdentifier":"id-2"}]}"#,
            partial(&["id-2"]),
        ),
        (
            r#"{"batchItemFailures":[{"itemIdentifier":"id-3"},{"itemIdentifier":"id-1"}]}"#,
            partial(&["id-3", "id-1"]),
        ),
        (
            r#"{"batchItemFailures":[{"itemIdentifier":"id-2"},{"itemIdentifier":"id-2"}]}"#,
            partial(&["id-2"]),
        ),
        (
            r#"{"batchItemFailures":[{"itemIdentifier":"id-1","reason":"x"}],"other":true}"#,
            partial(&["id-1"]),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(parse(body), expected, "{body}");
    }
}

#[test]
fn whole_batch_failures() {
    use InvalidResponse::*;
    let cases = [
        (
            r#"{"batchItemFailures":[{"itemIdentifier":123}]}"#,
            IdentifierNotString { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            IdentifierEmpty { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            IdentifierNull { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[{"foo":123}]}"#,
            IdentifierMissing { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[{"foo":null}]}"#,
            IdentifierMissing { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[{"foo":"notvalid"}]}"#,
            IdentifierMissing { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[{}]}"#,
            IdentifierMissing { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[{"itemIdentifier":"id-1"},{"itemIdentifier":"id-9"}]}"#,
            UnknownIdentifier {
                index: 1,
                identifier: "id-9".into(),
            },
        ),
        (
            r#"{"batchItemFailures":[{"itemIdentifier":["id-1"]}]}"#,
            IdentifierNotString { index: 0 },
        ),
        (
            r#"{"batchItemFailures":["id-1"]}"#,
            ItemNotObject { index: 0 },
        ),
        (
            r#"{"batchItemFailures":[null]}"#,
            ItemNotObject { index: 0 },
        ),
        (
            r#"{"batchItemFailures":{"itemIdentifier":"id-1"}}"#,
            FailuresNotArray,
        ),
        (r#"{"batchItemFailures":"id-1"}"#, FailuresNotArray),
        (r#"{"batchItemFailures":""}"#, FailuresNotArray),
        (r#""done""#, NotAnObject),
        ("42", NotAnObject),
        ("true", NotAnObject),
        (r#"[{"itemIdentifier":"id-1"}]"#, NotAnObject),
    ];
    for (body, reason) in cases {
        assert_eq!(parse(body), BatchResponse::Invalid(reason), "{body}");
    }
}

#[test]
fn unparseable_bodies_fail_the_batch() {
    for body in ["{", "{\"batchItemFailures\":[}", "not json", "{} {}"] {
        assert!(
            matches!(
                parse(body),
                BatchResponse::Invalid(InvalidResponse::InvalidJson(_))
            ),
            "{body}"
        );
    }
    let invalid_utf8 = parse_batch_response(&[b'"', 0xff, b'"'], in_batch);
    assert!(matches!(
        invalid_utf8,
        BatchResponse::Invalid(InvalidResponse::InvalidJson(_))
    ));
}

#[test]
fn identifiers_are_compared_exactly() {
    // Sequence numbers are compared as strings: no trimming, no numeric equivalence.
    for body in [
        r#"{"batchItemFailures":[{"itemIdentifier":" id-1"}]}"#,
        r#"{"batchItemFailures":[{"itemIdentifier":"ID-1"}]}"#,
    ] {
        assert!(
            matches!(
                parse(body),
                BatchResponse::Invalid(InvalidResponse::UnknownIdentifier { .. })
            ),
            "{body}"
        );
    }
}

#[test]
fn reasons_are_readable() {
    let reason = InvalidResponse::UnknownIdentifier {
        index: 2,
        identifier: "x".into(),
    };
    assert_eq!(
        reason.to_string(),
        r#"batchItemFailures[2].itemIdentifier "x" is not in the batch"#
    );
}

fn state(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn window_responses_need_a_state_object() {
    let check: &dyn Fn(&str) -> bool = &in_batch;
    let cases = [
        (
            r#"{"state":{}}"#,
            Ok(WindowResponse {
                state: Map::new(),
                failed: vec![],
            }),
        ),
        (
            r#"{"state":{"1":282},"batchItemFailures":[]}"#,
            Ok(WindowResponse {
                state: state(json!({"1": 282})),
                failed: vec![],
            }),
        ),
        (
            r#"{"state":{"n":1},"batchItemFailures":[{"itemIdentifier":"id-2"}]}"#,
            Ok(WindowResponse {
                state: state(json!({"n": 1})),
                failed: vec!["id-2".into()],
            }),
        ),
        ("", Err(InvalidResponse::StateMissing)),
        ("null", Err(InvalidResponse::StateMissing)),
        ("{}", Err(InvalidResponse::StateMissing)),
        (
            r#"{"batchItemFailures":[]}"#,
            Err(InvalidResponse::StateMissing),
        ),
        (r#"{"state":null}"#, Err(InvalidResponse::StateMissing)),
        (r#"{"state":[1]}"#, Err(InvalidResponse::StateNotObject)),
        (r#"{"state":"s"}"#, Err(InvalidResponse::StateNotObject)),
        ("7", Err(InvalidResponse::NotAnObject)),
        (
            r#"{"state":{},"batchItemFailures":[{"itemIdentifier":""}]}"#,
            Err(InvalidResponse::IdentifierEmpty { index: 0 }),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            parse_window_response(body.as_bytes(), Some(check)),
            expected,
            "{body}"
        );
    }
}

#[test]
fn window_failures_are_ignored_without_report_batch_item_failures() {
    let body = br#"{"state":{"n":1},"batchItemFailures":[{"itemIdentifier":""}]}"#;
    assert_eq!(
        parse_window_response(body, None),
        Ok(WindowResponse {
            state: state(json!({"n": 1})),
            failed: vec![]
        })
    );
}
