//! `poller filter` with the real binary: which records a mapping keeps, per source, from files and stdin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;

fn poller(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_poller"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("poller runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A mapping file for `arn` with these filter patterns (each a JSON pattern in a string).
fn mapping(dir: &Path, arn: &str, patterns: &[&str]) -> PathBuf {
    let filters: Vec<_> = patterns
        .iter()
        .map(|p| serde_json::json!({ "Pattern": p }))
        .collect();
    let mut m = serde_json::json!({
        "EventSourceArn": arn,
        "FunctionName": "f",
        "FilterCriteria": { "Filters": filters },
    });
    if !arn.starts_with("arn:aws:sqs") {
        m["StartingPosition"] = "TRIM_HORIZON".into();
    }
    write(dir, "mapping.json", &m.to_string())
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

const SQS: &str = "arn:aws:sqs:us-east-1:123456789012:q";

#[test]
fn sqs_json_body_is_matched_as_json_and_the_matching_filter_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = mapping(
        dir.path(),
        SQS,
        &[r#"{"body":{"kind":["a"]}}"#, r#"{"body":{"kind":["b"]}}"#],
    );
    let b = write(dir.path(), "b.json", r#"{"kind":"b"}"#);
    let c = write(dir.path(), "c.json", r#"{"kind":"c"}"#);
    // A whole record as in the event: its `body` is a string holding JSON.
    let record =
        serde_json::json!({"messageId": "1", "body": r#"{"kind":"a"}"#, "eventSource": "aws:sqs"});
    let r = write(dir.path(), "record.json", &record.to_string());
    let out = stdout(&poller(
        &[
            "filter",
            "-m",
            m.to_str().unwrap(),
            b.to_str().unwrap(),
            c.to_str().unwrap(),
            r.to_str().unwrap(),
        ],
        "",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].ends_with(r#"b.json: kept by filter[1] {"body":{"kind":["b"]}}"#),
        "{out}"
    );
    assert!(lines[1].ends_with("c.json: dropped"), "{out}");
    assert!(
        lines[2].ends_with(r#"record.json: kept by filter[0] {"body":{"kind":["a"]}}"#),
        "{out}"
    );
}

#[test]
fn kinesis_data_is_encoded_as_the_stream_would_and_json_output_serves_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let m = mapping(
        dir.path(),
        "arn:aws:kinesis:us-east-1:123456789012:stream/s",
        &[r#"{"data":{"temp":[{"numeric":[">",30]}]}}"#],
    );
    // One record in the Kinesis record shape (data base64), one raw data line, one raw line that is dropped.
    let data = base64::engine::general_purpose::STANDARD.encode(r#"{"temp":31}"#);
    let event = serde_json::json!({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": data, "partitionKey": "p"}}]});
    let stdin = format!("{event}\n{{\"temp\":40}}\n{{\"temp\":10}}\n");
    let out = stdout(&poller(
        &["filter", "-m", m.to_str().unwrap(), "--output", "json"],
        &stdin,
    ));
    let verdicts: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kept: Vec<(&str, bool)> = verdicts
        .iter()
        .map(|v| (v["input"].as_str().unwrap(), v["kept"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        kept,
        [("stdin:1", true), ("stdin:2", true), ("stdin:3", false)],
        "{out}"
    );
    assert_eq!(verdicts[0]["filter"], 0);
    assert_eq!(verdicts[2]["filter"], serde_json::Value::Null);
}

#[test]
fn dynamodb_new_image_is_matched_in_dynamodb_json() {
    let dir = tempfile::tempdir().unwrap();
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000";
    let m = mapping(
        dir.path(),
        arn,
        &[r#"{"dynamodb":{"NewImage":{"status":{"S":["open"]}}}}"#],
    );
    let open = serde_json::json!({"eventSource": "aws:dynamodb", "eventName": "INSERT", "dynamodb": {"NewImage": {"status": {"S": "open"}}}});
    let plain = serde_json::json!({"NewImage": {"status": "open"}}); // not DynamoDB JSON: no type key
    let stdin = format!("{open}\n{plain}\n{{\"NewImage\":{{\"status\":{{\"S\":\"open\"}}}}}}\n");
    let out = stdout(&poller(&["filter", "-m", m.to_str().unwrap()], &stdin));
    assert_eq!(
        out.lines()
            .map(|l| l.split(": ").nth(1).unwrap())
            .collect::<Vec<_>>(),
        [
            "kept by filter[0] {\"dynamodb\":{\"NewImage\":{\"status\":{\"S\":[\"open\"]}}}}",
            "dropped",
            "kept by filter[0] {\"dynamodb\":{\"NewImage\":{\"status\":{\"S\":[\"open\"]}}}}"
        ],
        "{out}"
    );
}

#[test]
fn bad_pattern_is_reported_as_validate_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let m = mapping(dir.path(), SQS, &[r#"{"body":{"kind":"a"}}"#]);
    let filter = poller(&["filter", "-m", m.to_str().unwrap()], "x\n");
    let validate = poller(&["validate", m.to_str().unwrap()], "");
    assert_eq!(filter.status.code(), Some(1));
    let message = String::from_utf8_lossy(&filter.stderr);
    assert!(
        message.contains("FilterCriteria.Filters[0].Pattern"),
        "{message}"
    );
    assert_eq!(message, String::from_utf8_lossy(&validate.stderr));
    assert!(filter.stdout.is_empty());
}

#[test]
fn bad_record_line_names_the_line_and_the_others_are_still_judged() {
    let dir = tempfile::tempdir().unwrap();
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000";
    let m = mapping(dir.path(), arn, &[r#"{"eventName":["INSERT"]}"#]);
    let out = poller(
        &["filter", "-m", m.to_str().unwrap()],
        "{\"Keys\":{}}\nnot json\n[1,2]\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stdin:2: expected a JSON object"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stdin:3: expected a JSON object"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"stdin:1: kept by filter[0] {"eventName":["INSERT"]}"#
    );
}

#[test]
fn an_sqs_body_that_looks_like_another_services_event_is_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let m = mapping(
        dir.path(),
        SQS,
        &[r#"{"body":{"Records":{"eventSource":["aws:s3"]}}}"#],
    );
    // An S3 event notification delivered to SQS: its body is a `{"Records":[…]}` event of S3.
    let notification =
        serde_json::json!({"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": "a"}}}]});
    let sqs_event = serde_json::json!({"Records": [{"eventSource": "aws:sqs", "body": notification.to_string()}, {"eventSource": "aws:sqs", "body": "x"}]});
    let out = stdout(&poller(
        &["filter", "-m", m.to_str().unwrap()],
        &format!("{notification}\n{sqs_event}\n"),
    ));
    let verdicts: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit_once(": ").unwrap().1)
        .collect();
    let kept = r#"kept by filter[0] {"body":{"Records":{"eventSource":["aws:s3"]}}}"#;
    assert_eq!(verdicts, [kept, kept, "dropped"], "{out}");
}
