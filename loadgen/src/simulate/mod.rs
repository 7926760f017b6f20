//! The function simulator (`loadgen simulate`): an HTTP server that stands in for a Lambda function.
//!
//! It serves the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations` with
//! `RequestResponse`, `Event` and `DryRun`) and a plain HTTP target (`POST /http/{name}`), with a
//! configurable latency distribution, cold starts, error rate, reserved-concurrency throttling,
//! periodic stalls and scripted per-record responses for SQS, Kinesis and DynamoDB Streams events.
//! Tests start it in process:
//!
//! ```no_run
//! # async fn example() -> Result<(), loadgen::Error> {
//! use loadgen::simulate::{FunctionConfig, SimConfig, Simulator};
//!
//! let config = SimConfig {
//!     record: true,
//!     default: FunctionConfig { reserved_concurrency: Some(2), ..FunctionConfig::default() },
//!     ..SimConfig::default()
//! };
//! let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap()).await?;
//! // ... point the code under test at sim.url() ...
//! println!("{:?}", sim.stats());
//! sim.shutdown().await
//! # }
//! ```
//!
//! Layout: pure logic in `timing` (latency, stalls), `event` (reading records), `rules`
//! (scripted responses), `pool` (execution environments) and `wire` (Invoke API formats); I/O in
//! `function`, `simulator` and `http`. Decisions are written down in `docs/simulator.md`.

mod config;
mod event;
mod event_invoke;
mod function;
mod http;
mod pool;
mod recording;
mod rules;
mod simulator;
mod timing;
mod wire;

use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard};

pub use config::{FailureMode, FunctionConfig, Rule, RuleAction, SimConfig};
pub use event_invoke::EventInvokeConfig;
pub use recording::{Endpoint, FunctionStats, Invocation, InvocationResult, InvocationType, Stats};
pub use simulator::{SimHandle, Simulator};
pub use timing::{Latency, Stall};

use crate::cli::SimulateArgs;

/// `loadgen simulate`: serves until SIGTERM or Ctrl-C, then shuts down gracefully.
pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let config = effective_config(&args)?;
    if args.print_config {
        print!("{}", toml::to_string(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    // Handlers go in before the address is printed: a script may signal as soon as it reads it.
    let stop = shutdown_signal()?;
    let sim = Simulator::start(config, args.bind).await?;
    // Scripts wait for this exact line to learn the port (with `--bind 127.0.0.1:0`).
    println!("listening on {}", sim.url());
    stop.await?;
    tracing::info!("shutting down");
    sim.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// The config file (or the defaults) with the command-line flags applied to every function.
fn effective_config(args: &SimulateArgs) -> Result<SimConfig, crate::Error> {
    let mut config = match &args.config {
        Some(path) => SimConfig::load(path)?,
        None => SimConfig::default(),
    };
    if args.seed.is_some() {
        config.seed = args.seed;
    }
    config.record |= args.record;
    for function in config.all_functions_mut() {
        if let Some(latency) = args.latency {
            function.latency = latency;
        }
        if let Some(cold_start) = args.cold_start {
            function.cold_start = cold_start;
        }
        if let Some(error_rate) = args.error_rate {
            function.error_rate = error_rate;
        }
        if let Some(limit) = args.reserved_concurrency {
            function.reserved_concurrency = Some(limit);
        }
        if let Some(mode) = args.failure_mode {
            function.failure_mode = mode;
        }
        if let Some(stall) = args.stall {
            function.stall = Some(stall);
        }
        let event_invoke = &mut function.event_invoke;
        if args.on_success.is_some() {
            event_invoke.on_success.clone_from(&args.on_success);
        }
        if args.on_failure.is_some() {
            event_invoke.on_failure.clone_from(&args.on_failure);
        }
        if let Some(n) = args.maximum_retry_attempts {
            event_invoke.maximum_retry_attempts = n;
        }
        if !args.retry_delays.is_empty() {
            event_invoke.retry_delays.clone_from(&args.retry_delays);
        }
        function
            .rules
            .extend(args.fail_body_contains.iter().map(|text| Rule {
                body_contains: Some(text.clone()),
                ..Rule::default()
            }));
    }
    config.validate()?;
    Ok(config)
}

/// Registers the SIGTERM and SIGINT (Ctrl-C) handlers now, not on first poll; the returned future
/// resolves on either.
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    })
}

#[cfg(not(unix))]
pub(crate) fn shutdown_signal() -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    Ok(tokio::signal::ctrl_c())
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(argv: &[&str]) -> SimulateArgs {
        let Command::Simulate(args) = Cli::parse_from(argv).command else {
            panic!("not `simulate`");
        };
        args
    }

    #[test]
    fn flags_apply_to_every_function() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "[default]\nerror_rate = 0.5\n[functions.a]\n[functions.b]\nerror_rate = 0.2\n",
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let config = effective_config(&args(&[
            "loadgen",
            "simulate",
            "--config",
            path,
            "--latency",
            "uniform:1ms..2ms",
            "--fail-body-contains",
            "bad",
            "--failure-mode",
            "error",
            "--seed",
            "9",
            "--record",
            "--stall",
            "1s/10s",
            "--on-success",
            "arn:aws:sqs:us-east-1:123456789012:ok",
            "--on-failure",
            "http://127.0.0.1:1/123456789012/failed",
            "--maximum-retry-attempts",
            "1",
            "--retry-delay",
            "10ms",
            "--retry-delay",
            "20ms",
        ]))
        .unwrap();
        assert_eq!(config.seed, Some(9));
        assert!(config.record);
        for function in [
            &config.default,
            &config.functions["a"],
            &config.functions["b"],
        ] {
            assert_eq!(function.latency, "uniform:1ms..2ms".parse().unwrap());
            assert_eq!(function.failure_mode, FailureMode::Error);
            assert_eq!(
                function.rules,
                vec![Rule {
                    body_contains: Some("bad".to_owned()),
                    ..Rule::default()
                }]
            );
            assert_eq!(function.stall, Some("1s/10s".parse().unwrap()));
            let e = &function.event_invoke;
            assert_eq!(e.on_success.as_deref(), Some("arn:aws:sqs:us-east-1:123456789012:ok"));
            assert_eq!(e.on_failure.as_deref(), Some("http://127.0.0.1:1/123456789012/failed"));
            assert_eq!(e.maximum_retry_attempts, 1);
            assert_eq!(
                e.retry_delays,
                [std::time::Duration::from_millis(10), std::time::Duration::from_millis(20)]
            );
        }
        // Unset flags keep the file's values.
        assert_eq!(config.functions["a"].error_rate, 0.5);
        assert_eq!(config.functions["b"].error_rate, 0.2);
    }

    #[test]
    fn flag_values_are_validated_like_the_file() {
        let error =
            effective_config(&args(&["loadgen", "simulate", "--error-rate", "2"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid configuration: default.error_rate: must be between 0.0 and 1.0, got 2"
        );
    }

    #[test]
    fn malformed_flags_are_rejected_by_the_parser() {
        let error = Cli::try_parse_from(["loadgen", "simulate", "--latency", "uniform:9ms..1ms"])
            .unwrap_err();
        assert!(error.to_string().contains("minimum is larger"), "{error}");
    }
}
