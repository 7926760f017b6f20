//! `loadgen sweep` end to end: the binary steps concurrency against `loadgen simulate` (in process)
//! with a reserved concurrency of 5, so the knee is known: 4 in flight hold, 8 are throttled with
//! the simulator's `Reason`.

use serde_json::Value;

use loadgen::simulate::{FunctionConfig, SimConfig};

mod common;
use common::{command, exited, start};

#[tokio::test]
async fn sweep_stops_at_the_reserved_concurrency_and_reports_the_knee() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            latency: "20ms".parse().unwrap(),
            reserved_concurrency: Some(5),
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = command(&[
        "sweep",
        "--function",
        "capped",
        "--endpoint-url",
        &sim.url(),
        "--steps",
        "2,4,8,16",
        "--step-duration",
        "1s",
        "--threshold",
        "p99 < 10s",
        "--metrics-addr",
        "off",
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    let (stdout, _) = exited(&output, 0);

    let sweep: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let steps = sweep["steps"].as_array().unwrap();
    // 16 never ran: the sweep stops at the first step that throttles.
    let values: Vec<f64> = steps.iter().map(|s| s["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [2.0, 4.0, 8.0]);
    for held in &steps[..2] {
        assert_eq!(held["throttles"], 0, "{held}");
        assert_eq!(held["held"], true);
        assert!(held["requests"].as_u64().unwrap() > 0);
        assert_eq!(held["thresholds"][0]["passed"], true);
        // Each step has its own latency distribution.
        assert!(!held["percentiles"].as_array().unwrap().is_empty());
    }
    let throttled = &steps[2];
    assert_eq!(throttled["held"], false);
    assert!(throttled["throttles"].as_u64().unwrap() > 0, "{throttled}");
    let knee = &sweep["knee"];
    assert_eq!(knee["held"], 4.0);
    assert_eq!(knee["failed_at"], 8.0);
    assert!(
        knee["throttle_reasons"]["ReservedFunctionConcurrentInvocationLimitExceeded"]
            .as_u64()
            .unwrap()
            > 0,
        "{knee}"
    );
    assert_eq!(sweep["model"], "closed");

    assert!(stdout.contains("knee: concurrency 4 held"), "{stdout}");
    assert!(
        stdout.contains("at 8: throttled (ReservedFunctionConcurrentInvocationLimitExceeded ×"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(!html.contains("could not be drawn"));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_step_is_an_error_naming_it() {
    let output = command(&[
        "sweep",
        "--function",
        "f",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--steps",
        "2,many",
    ])
    .output()
    .await
    .unwrap();
    let (_, stderr) = exited(&output, 2);
    assert!(
        stderr.contains("--steps: `many` is not a concurrency"),
        "{stderr}"
    );
}
