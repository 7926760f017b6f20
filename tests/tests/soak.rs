//! The short soak (docs/soak.md): the nightly scenario of `scripts/soak.sh`, ~30 s long. Its thresholds
//! are the nightly ones; over 24 s they catch only gross leaks and stalls, but every part of the
//! scenario (producer, sampling, scraping, drain, SIGTERM, analysis) runs against the real binary.

use std::time::Duration;

use e2e::soak::{Config, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_stays_flat_and_loses_nothing() {
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(e2e::unique("soak"));
    // 20 messages and 20 records per second, not the nightly 100 and 50: the suite runs on loaded CI
    // machines, where a starved emulator cannot hold the nightly rates and the run would measure the
    // machine, not the poller.
    let config = Config {
        rate: 20,
        stream_rate: 20,
        ..Config::new(Duration::from_secs(24), e2e::poller_binary(), out_dir)
    };
    let report = run(&config).await.expect("the soak runs");
    let summary = report.summary();
    println!("{summary}");
    assert!(report.passed(), "{summary}");
    // 24 s with a 1 s interval: the analysis had the samples it needs, and most of the load went out.
    assert!(
        report.samples.len() >= 20,
        "{} samples",
        report.samples.len()
    );
    let asked = u64::from(config.rate) * config.duration.as_secs();
    assert!(
        report.outcome.sent * 10 >= asked * 9,
        "sent {} of {asked}",
        report.outcome.sent
    );
    // The Kinesis mapping ran beside the SQS one and was checked.
    let put = u64::from(config.stream_rate) * config.duration.as_secs();
    assert!(
        report.outcome.stream_sent * 10 >= put * 9,
        "put {} of {put}",
        report.outcome.stream_sent
    );
    for stream_check in [
        "stream keeps up",
        "stream lag flat",
        "stream load held",
        "no record lost",
    ] {
        assert!(
            report.checks.iter().any(|c| c.name == stream_check),
            "{stream_check} checked"
        );
    }
    let junit = std::fs::read_to_string(report.out_dir.join("junit.xml")).expect("junit.xml");
    assert_eq!(
        junit.matches("<testcase ").count(),
        report.checks.len(),
        "{junit}"
    );
    assert!(!junit.contains("<failure"), "{junit}");
    for file in [
        "samples.csv",
        "checks.json",
        "junit.xml",
        "stream-mapping.json",
        "summary.txt",
        "poller.log",
        "poller-report.txt",
    ] {
        assert!(report.out_dir.join(file).is_file(), "{file} written");
    }
}
