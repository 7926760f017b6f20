//! Memory stays flat over long runs: nothing is stored per request.
//!
//! Its own test binary (own process) with one test, so no other test allocates meanwhile. Linux
//! only: it reads the resident set size from /proc.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::time::Duration;

use lambda_invoke::{HttpTarget, Target};
use loadgen::metrics::RunMetrics;
use loadgen::plan::Plan;
use loadgen::run::{Outcome, Recorder, ReportLine, Sample, execute};
use loadgen::scenario::Scenario;
use loadgen::simulate::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

/// Resident set size in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

const MB: u64 = 1 << 20;

#[tokio::test]
async fn memory_does_not_grow_with_the_number_of_requests() {
    // The statistics: two million samples over 200 intervals. Keeping even 16 bytes per sample
    // would add 32 MB.
    let mut recorder = Recorder::new(Duration::from_millis(10), true);
    let outcomes = [Outcome::Success, Outcome::Throttle, Outcome::FunctionError];
    let record = |from: u64, to: u64, recorder: &mut Recorder| {
        for i in from..to {
            recorder.record(&Sample {
                outcome: outcomes[(i % 3) as usize],
                detail: (i % 3 == 1)
                    .then(|| "ReservedFunctionConcurrentInvocationLimitExceeded".to_owned()),
                latency: Duration::from_micros(1_000 + i % 500_000),
                service_time: Duration::from_micros(900 + i % 400_000),
                send_lag: Duration::from_micros(i % 20_000),
                // Every request has a REPORT line (billing and overhead), every 1000th a cold start.
                report: Some(ReportLine {
                    duration: Duration::from_micros(800 + i % 300_000),
                    billed_duration: Duration::from_millis(1 + i % 300),
                    memory_size_mb: 128,
                    max_memory_used_mb: 64,
                    init_duration: (i % 1000 == 0).then(|| Duration::from_millis(150)),
                }),
            });
            if i % 10_000 == 9_999 {
                recorder.rotate(Duration::from_secs(i / 10_000 + 1));
            }
        }
    };
    record(0, 100_000, &mut recorder);
    let before = rss();
    record(100_000, 2_100_000, &mut recorder);
    let grown = rss().saturating_sub(before);
    assert_eq!(recorder.total(), 2_100_000);
    assert!(grown < 4 * MB, "recorder grew by {} KB", grown / 1024);

    // The engine: a warm-up run, then one with six times as many requests.
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let run = |requests: u64| {
        let scenario: Scenario = toml::from_str(&format!(
            "[target]\nurl = \"http://unused\"\n[load]\nconcurrency = 8\nmax_requests = {requests}\n"
        ))
        .unwrap();
        let plan = Plan::new(scenario, Path::new(".")).unwrap();
        let target =
            Target::Http(HttpTarget::new(format!("{}/http/mem", sim.url()), None).unwrap());
        async move {
            execute(
                &plan,
                target,
                &CancellationToken::new(),
                &mut (),
                &mut RunMetrics::new(&plan),
            )
            .await
        }
    };
    assert_eq!(run(2_000).await.sent, 2_000);
    let before = rss();
    let long = run(12_000).await;
    let grown = rss().saturating_sub(before);
    assert_eq!(long.measurements.latency.count(Outcome::Success), 12_000);
    assert!(grown < 8 * MB, "engine run grew by {} KB", grown / 1024);
}
