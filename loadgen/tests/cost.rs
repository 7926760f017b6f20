//! Cost and service overhead from the `REPORT` lines, end to end: the `loadgen` binary invokes
//! `loadgen simulate` (in process) through the Invoke API with `--log-tail`, and its report must
//! bill exactly what the simulator's own record of every invocation says.

use serde_json::Value;

use loadgen::simulate::{FunctionConfig, SimConfig};

mod common;
use common::{command, exited, start};

const REQUESTS: u64 = 200;
const MEMORY_MB: u32 = 512;
const GB_SECOND: f64 = 0.00002;
const PER_MILLION: f64 = 0.25;

/// `Billed Duration` of one recorded invocation: Duration + Init Duration rounded up to the
/// millisecond. The record has them as f64 ms of nanosecond durations; taking a picosecond off
/// before rounding up makes float noise on a whole millisecond (20.000000000000004) harmless,
/// while a nanosecond past it still rounds up.
fn billed_ms(duration_ms: f64, init_ms: Option<f64>) -> u64 {
    ((duration_ms + init_ms.unwrap_or(0.0) - 1e-9).ceil() as u64).max(1)
}

#[tokio::test]
async fn report_lines_give_billed_gb_seconds_cost_and_overhead() {
    let sim = start(SimConfig {
        record: true,
        default: FunctionConfig {
            latency: "20ms".parse().unwrap(),
            cold_start: "100ms".parse().unwrap(),
            memory_size_mb: MEMORY_MB,
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = command(&[
        "run",
        "--function",
        "priced",
        "--endpoint-url",
        &sim.url(),
        "--log-tail",
        "--concurrency",
        "4",
        "--requests",
        &REQUESTS.to_string(),
        "--architecture",
        "arm64",
        "--price-gb-second",
        &GB_SECOND.to_string(),
        "--price-per-million-requests",
        &PER_MILLION.to_string(),
        "--metrics-addr",
        "off",
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    let (stdout, _) = exited(&output, 0);

    // The simulator's ground truth: what each invocation measured and was billed.
    let invocations = sim.invocations();
    assert_eq!(invocations.len() as u64, REQUESTS);
    let billed: u64 = invocations
        .iter()
        .map(|i| billed_ms(i.duration_ms, i.init_duration_ms))
        .sum();
    let cold = invocations.iter().filter(|i| i.cold_start).count() as u64;
    assert!((1..=4).contains(&cold), "{cold} cold starts");
    // Every invocation ran at least its 20 ms, and each cold start adds its 100 ms init.
    assert!(billed >= REQUESTS * 20 + cold * 100, "{billed}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let f = &report["function"];
    assert_eq!(f["invocations"], REQUESTS);
    assert_eq!(f["billed_duration_ms"], billed);
    let gb_seconds = (u128::from(billed) * u128::from(MEMORY_MB)) as f64 / 1024.0 / 1000.0;
    assert_eq!(f["billed_gb_seconds"].as_f64(), Some(gb_seconds));
    assert_eq!(f["memory_size_mb"], MEMORY_MB);
    assert_eq!(f["max_memory_used_mb"], 64);
    assert_eq!(f["memory_used_ratio"].as_f64(), Some(64.0 / 512.0));
    assert_eq!(f["prices"]["architecture"], "arm64");
    assert_eq!(f["prices"]["gb_second"].as_f64(), Some(GB_SECOND));
    assert_eq!(
        f["prices"]["per_million_requests"].as_f64(),
        Some(PER_MILLION)
    );
    let total = gb_seconds * GB_SECOND + REQUESTS as f64 * PER_MILLION / 1e6;
    let cost = f["cost"]["total"].as_f64().unwrap();
    assert!((cost - total).abs() <= total * 1e-12, "{cost} vs {total}");
    let per_million = f["cost"]["per_million_invocations"].as_f64().unwrap();
    assert!((per_million - total / REQUESTS as f64 * 1e6).abs() <= per_million * 1e-12);
    assert_eq!(report["cold_starts"]["count"], cold);

    // The overhead: one value per invocation, never more than what the client waited.
    let overhead = &f["overhead_ms"];
    assert_eq!(overhead["count"], REQUESTS);
    let service_max = report["service_time_ms"]["max"].as_f64().unwrap();
    assert!(overhead["max"].as_f64().unwrap() <= service_max);
    // The function's own Duration: at least the 20 ms it was configured to take.
    assert!(f["duration_ms"]["min"].as_f64().unwrap() >= 20.0, "{f}");
    assert_eq!(
        f["overhead_percentiles"].as_array().unwrap().len(),
        report["percentiles"].as_array().unwrap().len()
    );

    // Every output shows it.
    assert!(
        stdout.contains(&format!(
            "function (REPORT lines of {REQUESTS} invocations)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("cost at arm64 prices ($0.00002 per GB-s, $0.25 per million requests)"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("overhead ")),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("percentiles.csv")).unwrap();
    assert!(
        csv.starts_with("percentile,latency_ms,overhead_ms\n"),
        "{csv}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains(&format!(
            "<tr><td>billed duration</td><td>{billed} ms</td></tr>"
        )),
        "{html}"
    );
    assert!(html.contains("></i>service overhead"));
    sim.shutdown().await.unwrap();
}
