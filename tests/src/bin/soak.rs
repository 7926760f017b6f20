//! The soak scenario (docs/soak.md): `scripts/soak.sh DURATION` starts moto and runs this. Runs the
//! real `poller` binary built next to this one on an SQS queue at a constant rate for DURATION,
//! samples its memory and latency, and checks that they stay flat.
//!
//! Usage: `soak DURATION [--rate MSGS_PER_S] [--out DIR]` (DURATION like `30m`, `90s`, `1h30m`).
//! Exit code 0: every check passed; 1: a check failed; 2: the scenario could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use e2e::soak::{self, Config};

const USAGE: &str =
    "usage: soak DURATION [--rate MSGS_PER_S] [--out DIR]   (DURATION: 30m, 90s, 1h30m, …)";

#[tokio::main]
async fn main() -> ExitCode {
    let config = match config(std::env::args().skip(1).collect()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("soak: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!(
        "soak: {} s at {} msg/s, sampling every {} s after a {} s warm-up; output in {}",
        config.duration.as_secs(),
        config.rate,
        config.interval.as_secs(),
        config.warmup.as_secs(),
        config.out_dir.display()
    );
    match soak::run(&config).await {
        Ok(report) => {
            print!("{}", report.summary());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("soak: could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn config(args: Vec<String>) -> anyhow::Result<Config> {
    let mut args = args.into_iter();
    let duration = args.next().context("DURATION missing")?;
    let duration = soak::parse_duration(&duration)
        .with_context(|| format!("invalid DURATION {duration:?}"))?;
    let poller_bin = std::env::current_exe()?.with_file_name("poller");
    anyhow::ensure!(
        poller_bin.exists(),
        "{} not built (scripts/soak.sh builds it)",
        poller_bin.display()
    );
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    let mut config = Config::new(duration, poller_bin, repo.join(format!("out/soak-{stamp}")));
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rate" => config.rate = value.parse().with_context(|| format!("--rate {value:?}"))?,
            "--out" => config.out_dir = PathBuf::from(value),
            _ => anyhow::bail!("unknown argument {flag:?}"),
        }
    }
    Ok(config)
}
