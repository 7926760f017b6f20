//! `loadgen run`: the load generator.
//!
//! Layout: pure logic in `schedule` (arrival schedules, stage interpolation), `outcome`
//! (classification, REPORT lines), `stats` (histograms) and `mix` (request weights); I/O in
//! `engine` (the one send loop) and in this module (targets, signals, output files). Decisions are
//! written down in docs/loadgen.md.

mod client;
mod engine;
mod mix;
mod outcome;
mod progress;
mod schedule;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use client::Client;
pub use engine::{IntervalSink, Run, execute};
pub use mix::Mix;
pub use outcome::{Classified, Outcome, ReportLine, classify};
pub use schedule::{
    ArrivalTimes, ClosedSchedule, Next, OpenSchedule, Profile, Schedule, Shortfall, Stage,
};
pub use stats::{
    Details, Interval, IntervalRow, Measurements, OutcomeHistograms, Recorder, Sample, SendStats,
    UNIT_PER_MS, histogram,
};
pub(crate) use stats::{MAX_DETAILS, OTHER_DETAIL};

use crate::Error;
use crate::cli::{MetricsAddr, RunArgs};
use crate::metrics::{self, RunMetrics};
use crate::report::{self, HlogWriter, Report, RunInfo};
use crate::scenario::{Overrides, Plan, Scenario};

/// The `.hlog` file's name in `--out-dir`.
pub const HLOG_FILE: &str = "latency.hlog";

/// Both sinks of a run: progress bar and `.hlog`.
impl<A: IntervalSink, B: IntervalSink> IntervalSink for (A, B) {
    fn interval(&mut self, interval: &Interval) {
        self.0.interval(interval);
        self.1.interval(interval);
    }
}

impl<S: IntervalSink> IntervalSink for Option<S> {
    fn interval(&mut self, interval: &Interval) {
        if let Some(sink) = self {
            sink.interval(interval);
        }
    }
}

/// `loadgen run`. Exit code 0 when every threshold passed, 1 when one was breached, 3 when they
/// passed but the generator could not hold its schedule (unless `--allow-dropped`); errors (exit
/// 2 in `main`) are returned.
pub(crate) async fn command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let target = Client::for_plan(&plan.target).await?;
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::Write {
            path: dir.clone(),
            error: e.to_string(),
        })?;
    }
    let mut metrics = RunMetrics::new(&plan);
    let metrics_stop = CancellationToken::new();
    // The server stops when this function returns, after the outputs are written.
    let _metrics_server = metrics_stop.clone().drop_guard();
    serve_metrics(args.metrics_addr, &metrics, metrics_stop).await?;
    let stop = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(stop.clone()));
    tracing::info!(
        scenario = %plan.name,
        target = %plan.target.describe(),
        model = plan.load.model.as_str(),
        length = %plan.load.describe_length(),
        "starting; Ctrl-C stops sending and waits for requests in flight"
    );

    let progress = progress::Progress::new(
        plan.load.profile.duration(),
        plan.load.max_requests.filter(|_| plan.load.is_open_ended()),
        args.no_progress,
    );
    let started_at = std::time::SystemTime::now();
    let hlog = match &args.out_dir {
        Some(dir) => Some(HlogWriter::create(
            &dir.join(HLOG_FILE),
            started_at,
            &format!("loadgen {} run of {}", env!("CARGO_PKG_VERSION"), plan.name),
        )?),
        None => None,
    };
    let mut sinks = (progress, hlog);
    let run = execute(&plan, target, &stop, &mut sinks, &mut metrics).await;
    signals.abort();
    let (progress, hlog) = sinks;
    progress.finish();
    if let Some(hlog) = hlog {
        hlog.finish()?;
    }

    let info = RunInfo {
        name: plan.name.clone(),
        target: Some(plan.target.describe()),
        model: Some(plan.load.model.as_str().to_owned()),
        started_at: Some(run.started_at),
        interrupted: run.interrupted,
        merged_from: Vec::new(),
    };
    let report = Report::new(info, &run.measurements, &plan.thresholds);
    let code = publish(&report, args.out_dir.as_deref(), args.json)?;
    let held = report.sending.as_ref().is_none_or(|s| s.held_schedule);
    if report.passed && !held && !args.allow_dropped {
        eprintln!(
            "the generator could not hold its schedule (see \"generator saturated\"): exit 3 \
             (--allow-dropped accepts this)"
        );
        return Ok(ExitCode::from(3));
    }
    Ok(code)
}

/// Serves `metrics` where `--metrics-addr` says until `stop` fires. The default address is taken
/// only if free, so that two runs on one machine do not fail over it; an address given must bind.
async fn serve_metrics(
    flag: Option<MetricsAddr>,
    metrics: &RunMetrics,
    stop: CancellationToken,
) -> Result<(), Error> {
    let (addr, given) = match flag {
        Some(MetricsAddr(None)) => return Ok(()),
        Some(MetricsAddr(Some(addr))) => (addr, true),
        None => (
            metrics::DEFAULT_ADDR.parse().expect("a valid address"),
            false,
        ),
    };
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    match metrics::serve(addr, Arc::new(registry), stop).await {
        Ok(_) => Ok(()),
        Err(error) if !given => {
            tracing::warn!(%error, "no metrics: the default address is taken (see --metrics-addr)");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// The plan from the scenario file (if any) and the flags.
fn plan(args: &RunArgs) -> Result<Plan, Error> {
    let (mut scenario, base_dir) = match &args.scenario {
        Some(path) => (
            Scenario::load(path)?,
            path.parent().map_or_else(PathBuf::new, Path::to_path_buf),
        ),
        None => (Scenario::default(), PathBuf::from(".")),
    };
    scenario.apply(&Overrides {
        target_url: args.target_url.clone(),
        function: args.function.clone(),
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
        timeout: args.timeout,
        log_tail: args.log_tail,
        rate: args.rate,
        concurrency: args.concurrency,
        duration: args.duration,
        max_requests: args.requests,
        max_in_flight: args.max_in_flight,
        payload: args.payload.clone(),
        invocation_type: args.invocation_type,
        thresholds: args.thresholds.clone(),
        interval: args.interval,
        seed: args.seed,
    });
    Plan::new(scenario, &base_dir)
}

/// Prints the summary (or the JSON report) on stdout, writes the report files, and turns the
/// threshold verdict into the exit code.
pub(crate) fn publish(
    report: &Report,
    out_dir: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(dir) = out_dir {
        report::write_files(dir, report)?;
    }
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.summary());
        if let Some(dir) = out_dir {
            println!("  reports written to {}", dir.display());
        }
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Cancels `stop` on the first SIGINT/SIGTERM; a second one exits at once (130, as a shell
/// reports an interrupted command) for when waiting for requests in flight takes too long.
async fn stop_on_signal(stop: CancellationToken) {
    let Ok(first) = crate::simulate::shutdown_signal() else {
        return;
    };
    if first.await.is_err() {
        return;
    }
    eprintln!("stopping: waiting for requests in flight (Ctrl-C again to quit at once)");
    stop.cancel();
    if let Ok(second) = crate::simulate::shutdown_signal()
        && second.await.is_ok()
    {
        std::process::exit(130);
    }
}
