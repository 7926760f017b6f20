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

/// `poller GLOBAL run` for an SQS mapping with `secret` as the secret key and `http://127.0.0.1:9`
/// as the endpoint, where nothing listens; logging as the flags say, not as the environment does.
fn run_against_nothing(global: &[&str], secret: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mapping = write(
        dir.path(),
        "m.json",
        r#"{"EventSourceArn":"arn:aws:sqs:us-east-1:123456789012:q","FunctionName":"f"}"#,
    );
    Command::new(env!("CARGO_BIN_EXE_poller"))
        .args(global)
        .args(["run", "--metrics-addr", "off", "--endpoint-url", "http://127.0.0.1:9", "--mapping"])
        .arg(&mapping)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .env_remove("POLLER_LOG_FORMAT")
        .output()
        .expect("poller runs")
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
    // Nothing listens on port 9: start-up fails fast, and the failure is logged.
    let out = run_against_nothing(&["--log-format", "json"], "very-secret-value");
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

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `poller validate ARGS` in `dir`, with an empty environment but for `env` (`${VAR}` references must not
/// depend on the machine running the tests).
fn validate_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poller"))
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("poller runs")
}

/// Every file of `tests/fixtures/malformed` is refused, and stderr is exactly its `.expected` file: the
/// file name, the field and AWS's (or our) message, one line per problem.
#[test]
fn malformed_mapping_corpus() {
    let dir = fixtures().join("malformed");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
        .collect();
    cases.sort();
    assert!(cases.len() >= 50, "the corpus has its cases: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let file = format!("{case}.json");
        let expected = std::fs::read_to_string(dir.join(format!("{case}.expected")))
            .unwrap_or_else(|e| panic!("{case}.expected: {e}"));
        let out = validate_in(&dir, &[&file], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) || stderr != expected || !out.stdout.is_empty() {
            failures.push(format!(
                "{file}: exit {:?}\n  expected: {expected}  got:      {stderr}  stdout: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    let expected_files = std::fs::read_dir(&dir).unwrap().filter(|e| {
        e.as_ref().unwrap().path().extension().is_some_and(|x| x == "expected")
    });
    assert_eq!(expected_files.count(), cases.len(), "every .expected file has its .json");
}

/// A directory is every `*.json` inside it, sorted; each error names its own file.
#[test]
fn a_directory_is_validated_file_by_file() {
    let fixtures = fixtures();
    let out = validate_in(&fixtures, &["malformed"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let named: Vec<&str> = stderr.lines().map(|l| l.split(": ").next().unwrap()).collect();
    let mut sorted = named.clone();
    sorted.sort();
    assert_eq!(named, sorted, "files in name order:\n{stderr}");
    assert!(named.contains(&"malformed/null.json") && named.contains(&"malformed/wrong-type.json"), "{stderr}");

    let out = validate_in(&fixtures, &["valid"], &[("POLLER_FIXTURE_ACCOUNT", "123456789012")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "README.md is skipped, the list holds two mappings:\n{stdout}");
    // The exported disabled mapping stays disabled; the list's enabled ones run.
    assert!(lines[0].starts_with("valid/get-event-source-mapping-disabled.json: ok: ") && lines[0].ends_with(", disabled)"));
    assert!(lines[1].starts_with("valid/list-event-source-mappings.json: ok: arn:aws:kinesis:") && !lines[1].contains("disabled"));
    assert!(lines[2].starts_with("valid/list-event-source-mappings.json: ok: arn:aws:sqs:"));
    assert!(lines[3].starts_with("valid/with-byte-order-mark.json: ok: "));
    assert!(
        lines[4].starts_with("valid/with-variables.json: ok: arn:aws:sqs:us-east-1:123456789012:orders-dev → orders-fn-dev"),
        "{stdout}"
    );

    let empty = tempfile::tempdir().unwrap();
    write(empty.path(), "notes.txt", "not a mapping");
    let out = poller(&["run", "--mapping", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{}: no *.json mapping files in this directory\n", empty.path().display())
    );
}

/// Two mapping files for one queue and function would share one UUID, and so checkpoints: refused.
#[test]
fn duplicate_mappings_are_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = r#"{"EventSourceArn":"arn:aws:sqs:us-east-1:123456789012:q","FunctionName":"f"}"#;
    let a = write(dir.path(), "a.json", mapping);
    let b = write(dir.path(), "b.json", mapping);
    for args in [vec!["run", "--mapping"], vec!["validate"]] {
        let out = poller(&[&args[..], &[dir.path().to_str().unwrap()]].concat());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(&format!("{}: UUID ", b.display())), "{stderr}");
        assert!(stderr.contains(&format!("is also the UUID of a mapping in {}", a.display())), "{stderr}");
    }
}

/// Text logs to a pipe or file carry no colour codes, and a fatal error is printed once.
#[test]
fn text_logs_off_a_terminal_are_plain_and_fatal_errors_print_once() {
    // Nothing listens on port 9: start-up fails, which is fatal.
    let out = run_against_nothing(&[], "secret");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.stderr.contains(&0x1b), "no ANSI escape codes:\n{stderr:?}");
    let fatal: Vec<&str> = stderr.lines().filter(|l| l.contains("GetQueueUrl failed")).collect();
    assert_eq!(fatal.len(), 1, "the error is printed once:\n{stderr}");
    assert!(fatal[0].contains(" ERROR "), "{stderr}");
}
