//! Overload: a run the generator cannot keep up with ends at its duration (plus the requests in
//! flight, each bounded by the timeout), counts what it could not send as dropped, and says so
//! with exit code 4 unless told to accept it.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{exit_code, in_process, simulator};

/// Runs `loadgen run ARGS --out-dir DIR --no-progress` in process: its exit code, the report,
/// and how long it took.
async fn run(args: &[&str], dir: &Path) -> (ExitCode, Value, Duration) {
    let argv = [&["run"], args, &["--out-dir", dir.to_str().unwrap(), "--no-progress"]].concat();
    let started = Instant::now();
    let code = in_process(&argv).await.unwrap();
    let elapsed = started.elapsed();
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap();
    (code, serde_json::from_str(&report).unwrap(), elapsed)
}

fn count(report: &Value, field: &str) -> u64 {
    report["sending"][field].as_u64().unwrap()
}

/// 2 requests of 200 ms at a time serve 10 a second; 2,000 are asked for in one second. Before,
/// the run sent all 2,000 late (200 s); now it stops sending at 1 s, drops the rest, and waits
/// only for the two in flight.
#[tokio::test]
async fn an_unkeepable_rate_ends_at_its_duration_and_counts_the_dropped() {
    let sim = simulator("200ms").await;
    let url = format!("{}/http/slow", sim.url());
    let timeout = Duration::from_secs(5);
    let args = [
        "--target-url",
        &url,
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--max-in-flight",
        "2",
        "--timeout",
        "5s",
    ];
    let dir = tempfile::tempdir().unwrap();
    let (code, report, elapsed) = run(&args, dir.path()).await;
    assert!(
        elapsed < Duration::from_secs(1) + timeout,
        "took {elapsed:?}"
    );
    assert_eq!(exit_code(code), exit_code(ExitCode::from(4)));
    let requests = report["requests"].as_u64().unwrap();
    let dropped = count(&report, "dropped");
    assert!(dropped > 0);
    // Every arrival is either sent (and completed) or dropped.
    assert_eq!(requests + dropped, 2000, "{report:#}");
    assert!(count(&report, "waited_for_slot") > 0);
    assert_eq!(report["sending"]["held_schedule"], false);
    // Dropped arrivals are the generator's shortfall, not the target's failures.
    assert_eq!(report["outcomes"]["success"]["count"], requests);

    let dir = tempfile::tempdir().unwrap();
    let accepting = [&args[..], &["--allow-dropped"]].concat();
    let (code, report, _) = run(&accepting, dir.path()).await;
    assert_eq!(exit_code(code), exit_code(ExitCode::SUCCESS));
    assert!(count(&report, "dropped") > 0);
}

/// The reproduction, shortened: `--rate 200000` is far beyond what one process sends,
/// whatever the machine. The run still ends at its duration plus the timeout, and accounts for
/// every arrival.
#[tokio::test]
async fn an_impossible_rate_ends_in_bounded_time() {
    let sim = simulator("0ms").await;
    let url = format!("{}/http/fast", sim.url());
    let timeout = Duration::from_secs(5);
    let args = [
        "--target-url",
        &url,
        "--rate",
        "200000",
        "--duration",
        "1s",
        "--max-in-flight",
        "200",
        "--timeout",
        "5s",
    ];
    let dir = tempfile::tempdir().unwrap();
    let (code, report, elapsed) = run(&args, dir.path()).await;
    assert!(
        elapsed < Duration::from_secs(1) + timeout,
        "took {elapsed:?}"
    );
    let requests = report["requests"].as_u64().unwrap();
    let dropped = count(&report, "dropped");
    let generator_errors: u64 = report["sending"]["generator_errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(requests + dropped + generator_errors, 200_000, "{report:#}");
    assert!(dropped > 0, "{report:#}");
    assert_eq!(exit_code(code), exit_code(ExitCode::from(4)));
}
