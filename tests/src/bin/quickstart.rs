//! The quickstart (`scripts/quickstart.sh` starts moto and runs this): sets up an SQS queue with a
//! dead-letter queue in the emulator, starts the function simulator, runs the real `poller` binary with
//! `scenarios/quickstart-sqs.json`, and prints what happened.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loadgen::simulate::{FunctionConfig, Latency, Rule};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let mapping = repo.join("scenarios/quickstart-sqs.json");
    let poller_bin = std::env::current_exe()?.with_file_name("poller");
    anyhow::ensure!(poller_bin.exists(), "{} not built (run scripts/quickstart.sh)", poller_bin.display());

    println!("1. SQS queue `quickstart-orders` (visibility timeout 2 s) with a dead-letter queue (maxReceiveCount 2)");
    let sqs = e2e::Sqs::new().await;
    let (queue, dlq) = sqs.create_queue_with_dlq("quickstart-orders", 2, 2).await;
    let mut messages: Vec<(String, Option<String>)> = (1..=200)
        .map(|id| {
            let poison = if id % 100 == 42 { r#","poison":true"# } else { "" };
            (format!(r#"{{"type":"order","id":{id}{poison}}}"#), None)
        })
        .collect();
    messages.extend((1..=20).map(|id| (format!(r#"{{"type":"ping","id":{id}}}"#), None)));
    sqs.send(&queue, &messages).await;
    println!("   sent 200 orders (2 of them poison) and 20 pings");

    println!("2. function simulator: 5-20 ms per invoke, 120 ms cold starts, reports records containing \"poison\" as failed");
    let sim = e2e::simulator(FunctionConfig {
        latency: Latency::Uniform { min: Duration::from_millis(5), max: Duration::from_millis(20) },
        cold_start: Latency::Fixed(Duration::from_millis(120)),
        rules: vec![Rule { body_contains: Some("poison".into()), ..Rule::default() }],
        // Within the queue's 2 s visibility timeout, as AWS requires.
        timeout: Duration::from_secs(2),
        ..FunctionConfig::default()
    })
    .await;
    println!("   Lambda Invoke API at {}", sim.url());

    println!("3. poller run --mapping {} --lambda-endpoint-url {}", mapping.display(), sim.url());
    println!("   {}", std::fs::read_to_string(&mapping)?.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut poller = Command::new(&poller_bin)
        .args(["run", "--mapping"])
        .arg(&mapping)
        .args(["--lambda-endpoint-url", &sim.url()])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;

    let started = Instant::now();
    loop {
        let (left, dead) = (sqs.depth(&queue).await, sqs.depth(&dlq).await);
        print!("\r   queue: {left:>3} messages left, dead-letter queue: {dead}   ");
        std::io::stdout().flush()?;
        if left == 0 && dead == 2 {
            println!();
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(180), "the queue did not drain in 3 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    println!("4. SIGTERM to the poller: it finishes in-flight batches and reports");
    Command::new("kill").args(["-TERM", &poller.id().to_string()]).status()?;
    let mut report = String::new();
    std::io::Read::read_to_string(poller.stdout.as_mut().expect("piped"), &mut report)?;
    let status = poller.wait()?;
    print!("   {}", report);
    anyhow::ensure!(status.success(), "poller exited with {status}");

    let stats = &sim.stats().functions["quickstart-orders"];
    let ok_ids: std::collections::HashSet<String> = e2e::processed_bodies(&sim.invocations()).into_iter().collect();
    println!(
        "   function: {} invocations ({} cold starts), {} records ok ({} distinct), {} records failed",
        stats.invocations, stats.cold_starts, stats.records_ok, ok_ids.len(), stats.records_failed
    );
    let dead = sqs.drain(&dlq).await;
    for m in &dead {
        println!("   dead-letter queue: {}", m.body().unwrap_or_default());
    }
    println!(
        "done in {:.1} s: {} orders processed, {} in the dead-letter queue, pings filtered out and deleted",
        started.elapsed().as_secs_f64(),
        ok_ids.len(),
        dead.len()
    );
    Ok(())
}
