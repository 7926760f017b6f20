//! The `poller` binary: exit codes and messages for good and bad mapping files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn poller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poller"))
        .args(args)
        .output()
        .expect("poller runs")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_mapping_in_scenarios_validates() {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut mappings: Vec<PathBuf> = std::fs::read_dir(&scenarios)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    mappings.sort();
    assert!(!mappings.is_empty(), "scenarios/ has mapping files");
    let args: Vec<&str> = std::iter::once("validate")
        .chain(mappings.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let out = poller(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.contains(": ok: ")).count(), mappings.len(), "{stdout}");
}

#[test]
fn malformed_mapping_is_rejected_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"EventSourceArn":"arn:aws:sqs:us-east-1:123456789012:q","FunctionName":"f","BatchSize":0,
            "FilterCriteria":{"Filters":[{"Pattern":"{\"body\":\"not-an-array\"}"}]}}"#,
    );
    for args in [vec!["validate", bad.to_str().unwrap()], vec!["run", "--mapping", bad.to_str().unwrap()]] {
        let out = poller(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let path = bad.display().to_string();
        assert!(stderr.contains(&format!("{path}: BatchSize: must be between 1 and 10000, got 0")), "{stderr}");
        assert!(stderr.contains(&format!("{path}: FilterCriteria: FilterCriteria.Filters[0].Pattern: invalid filter pattern definition")), "{stderr}");
    }
}

#[test]
fn unknown_key_and_broken_json_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let typo = write(dir.path(), "typo.json", r#"{"EventSourceArn":"arn:aws:sqs:us-east-1:1:q","FunctionName":"f","BatchSzie":5}"#);
    let out = poller(&["validate", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BatchSzie: unknown field `BatchSzie`"));

    let broken = write(dir.path(), "broken.json", "{\"EventSourceArn\": ");
    let out = poller(&["validate", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EOF while parsing"));

    let missing = dir.path().join("missing.json");
    let out = poller(&["run", "--mapping", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}

#[test]
fn json_logs_are_one_object_per_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = write(
        dir.path(),
        "m.json",
        r#"{"EventSourceArn":"arn:aws:sqs:us-east-1:123456789012:q","FunctionName":"f"}"#,
    );
    // Nothing listens on port 9: start-up fails fast, and the failure is logged.
    let out = Command::new(env!("CARGO_BIN_EXE_poller"))
        .args(["--log-format", "json", "run", "--metrics-addr", "off", "--endpoint-url", "http://127.0.0.1:9", "--mapping"])
        .arg(&mapping)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "very-secret-value")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("poller runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each log line is a JSON object"))
        .collect();
    assert!(logs.iter().any(|l| l["level"] == "ERROR" && l["message"].as_str().is_some()), "{stderr}");
    assert!(!stderr.contains("very-secret-value"), "{stderr}");
}
