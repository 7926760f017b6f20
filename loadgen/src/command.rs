//! The `loadgen run`, `loadgen merge` and `loadgen sweep` commands: the only code that sees
//! command-line types.
//! Each reads its flags, builds what the lower layers take (a [`Plan`], [`Report`]s), chooses
//! the sinks, and turns the outcome into the exit code.
//!
//! Layers, each importing only those below it: [`cli`](crate::cli) (flags) →
//! [`scenario`](crate::scenario) (the file format, plain serde structs) → [`plan`](crate::plan)
//! (validated and resolved) → [`run`](crate::run) (the engine, which takes a plan) →
//! [`report`](crate::report) (sinks and outputs, which take the engine's
//! [`model`](crate::model) types).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::cli::{MergeArgs, MetricsAddr, RunArgs, SweepArgs};
use crate::merge::{InputTotals, sum_of_rates};
use crate::metrics::{self, RunMetrics};
use crate::model::Outcome;
use crate::plan::{Plan, TargetKind, Threshold};
use crate::report::{
    self, AbortOnFail, HLOG_FILE, HlogWriter, Knee, Progress, Report, RunInfo, Step, Sweep,
};
use crate::run::{destination, execute, target_for};
use crate::scenario::units::parse_rate;
use crate::scenario::{Model, Overrides, Scenario};
use crate::store::{self, Output};

/// Exit codes of `loadgen run` and `loadgen merge` (docs/loadgen.md, "Exit codes"). 2, for
/// errors, is `main`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 0: every threshold passed and at least one request succeeded.
    Passed,
    /// 1: a threshold failed, at the end or during the run with `abort_on_fail`.
    ThresholdFailed,
    /// 3: no request succeeded: a run that measured nothing useful must not pass a CI gate.
    NoSuccess,
    /// 4: the generator could not hold its schedule (arrivals dropped at the end, its own file
    /// descriptor or port limits): the target was not loaded as asked. `--allow-dropped` accepts it.
    ScheduleNotHeld,
    /// 130: stopped by Ctrl-C or SIGTERM, as a shell reports an interrupted command. The outputs
    /// are written, but the run is incomplete, so its thresholds cannot pass it.
    Interrupted,
}

impl Verdict {
    /// The verdict on a finished report; the first that applies wins.
    pub fn of(report: &Report, allow_dropped: bool) -> Verdict {
        let held = report.sending.as_ref().is_none_or(|s| s.held_schedule);
        if report.interrupted && report.aborted_by.is_none() {
            Verdict::Interrupted
        } else if !report.passed {
            Verdict::ThresholdFailed
        } else if report.outcomes[&Outcome::Success].count == 0 {
            Verdict::NoSuccess
        } else if !held && !allow_dropped {
            Verdict::ScheduleNotHeld
        } else {
            Verdict::Passed
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::ThresholdFailed => 1,
            Verdict::NoSuccess => 3,
            Verdict::ScheduleNotHeld => 4,
            Verdict::Interrupted => 130,
        }
    }
}

/// `loadgen run`. Errors (exit 2 in `main`) are returned.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let target = target_for(&plan.target).await?;
    // Before the run: a bucket that does not take writes must not cost the whole run.
    let output = match &args.out_dir {
        Some(out) => Some(Output::open(&store::run_location(out, args.worker.as_deref())?).await?),
        None => None,
    };
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

    let progress = Progress::new(
        plan.load.profile.duration(),
        plan.load.max_requests.filter(|_| plan.load.is_open_ended()),
        args.no_progress,
    );
    let started_at = std::time::SystemTime::now();
    let hlog = match &output {
        Some(out) => Some(HlogWriter::create(
            &out.dir().join(HLOG_FILE),
            started_at,
            &format!("loadgen {} run of {}", env!("CARGO_PKG_VERSION"), plan.name),
        )?),
        None => None,
    };
    let abort = plan
        .abort_on_fail
        .then(|| AbortOnFail::new(&plan, stop.clone()));
    let mut sinks = (progress, (hlog, abort));
    let mut run = execute(&plan, target, &stop, &mut sinks, &mut metrics).await;
    let (progress, (hlog, abort)) = sinks;
    progress.finish();
    if let Some(hlog) = hlog {
        hlog.finish()?;
    }
    let aborted_by = abort.and_then(AbortOnFail::tripped);
    if let Some(threshold) = &aborted_by {
        tracing::warn!(%threshold, "aborted: a threshold failed during the run");
    }

    let end_to_end = match &plan.target.destination {
        Some(destination) => {
            tracing::info!(queue = %destination.queue_url, accepted = run.accepted.len(), "collecting destination records");
            let region = match &plan.target.kind {
                TargetKind::Lambda { region, .. } => region.as_deref(),
                TargetKind::Http { .. } => None,
            };
            let accepted = std::mem::take(&mut run.accepted);
            // Ctrl-C (`stop`) ends the collection too; the records not in by then are not completed.
            Some(destination::collect(destination, region, accepted, &stop).await?)
        }
        None => None,
    };
    signals.abort();
    let info = RunInfo {
        name: plan.name.clone(),
        target: Some(plan.target.describe()),
        model: Some(plan.load.model.as_str().to_owned()),
        started_at: Some(run.started_at),
        interrupted: run.interrupted,
        aborted_by,
        merged_from: Vec::new(),
        prices: plan.prices,
        end_to_end,
    };
    let report = Report::new(info, &run.measurements, &plan.thresholds);
    publish(&report, output, args.json, args.allow_dropped, "").await
}

/// The plan from the scenario file (if any) and the flags.
pub fn plan(args: &RunArgs) -> Result<Plan, Error> {
    let (mut scenario, base_dir) = scenario(args)?;
    scenario.apply(&args.overrides());
    Plan::new(scenario, &base_dir)
}

/// The scenario file (if any) and the directory its relative paths start from.
fn scenario(args: &RunArgs) -> Result<(Scenario, PathBuf), Error> {
    Ok(match args.scenario() {
        Some(path) => (
            Scenario::load(path)?,
            path.parent().map_or_else(PathBuf::new, Path::to_path_buf),
        ),
        None => (Scenario::default(), PathBuf::from(".")),
    })
}

/// `loadgen sweep`: one constant load per step, for `--step-duration` each, until a step throttles
/// or breaks a threshold (docs/loadgen.md, "loadgen sweep").
pub async fn sweep(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let SweepArgs {
        steps,
        step_duration,
        run: run_args,
    } = args;
    let model = match run_args.model.as_deref() {
        Some("open") => Model::Open,
        _ => Model::Closed,
    };
    let values = steps
        .iter()
        .map(|text| step_value(model, text))
        .collect::<Result<Vec<f64>, _>>()?;
    let (base, base_dir) = scenario(&run_args)?;
    // The flags apply as in `loadgen run`; the load is the step's.
    let flags = Overrides {
        rate: None,
        concurrency: None,
        stages: None,
        model: None,
        duration: None,
        max_requests: None,
        ..run_args.overrides()
    };
    let plan_of = |value: f64| -> Result<Plan, Error> {
        let mut scenario = base.clone();
        scenario.apply(&flags);
        scenario.apply(&Overrides {
            rate: (model == Model::Open).then_some(value),
            concurrency: (model == Model::Closed).then_some(value as u32),
            duration: Some(step_duration),
            ..Overrides::default()
        });
        scenario.load.max_requests = None;
        Plan::new(scenario, &base_dir)
    };
    // Every step's plan is checked before the first one runs.
    let plans = values
        .iter()
        .map(|&v| plan_of(v))
        .collect::<Result<Vec<Plan>, _>>()?;
    // Before the steps: a bucket that does not take writes must not cost the whole sweep.
    let output = match &run_args.out_dir {
        Some(out) => {
            Some(Output::open(&store::run_location(out, run_args.worker.as_deref())?).await?)
        }
        None => None,
    };
    let stop = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(stop.clone()));
    let mut done = Vec::new();
    for (plan, &value) in plans.iter().zip(&values) {
        tracing::info!(step = value, model = model.as_str(), "sweep step");
        let target = target_for(&plan.target).await?;
        let mut metrics = RunMetrics::new(plan);
        let run = execute(plan, target, &stop, &mut (), &mut metrics).await;
        if run.interrupted {
            break;
        }
        let step = Step::new(value, &run.measurements, &plan.thresholds);
        let go_on = report::go_on_after(&step);
        done.push(step);
        if !go_on {
            break;
        }
    }
    signals.abort();
    let first = &plans[0];
    let sweep = Sweep {
        name: first.name.clone(),
        target: first.target.describe(),
        model: model.as_str().to_owned(),
        step_duration_s: step_duration.as_secs_f64(),
        knee: Knee::of(&done),
        steps: done,
        interrupted: stop.is_cancelled(),
    };
    let written_to = match output {
        Some(out) => {
            report::write_sweep(out.dir(), &sweep)?;
            let location = out.location().to_string();
            out.finish().await?;
            Some(location)
        }
        None => None,
    };
    if run_args.json {
        println!("{}", sweep.to_json());
    } else {
        print!("{}", sweep.summary());
        if let Some(location) = written_to {
            println!("  reports written to {location}");
        }
    }
    Ok(ExitCode::from(if sweep.interrupted {
        Verdict::Interrupted.code()
    } else if sweep.knee.held.is_some() {
        0
    } else {
        1
    }))
}

/// A step of `--steps`: a concurrency (closed model) or a rate (open model).
fn step_value(model: Model, text: &str) -> Result<f64, Error> {
    let value = match model {
        Model::Closed => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&c| c > 0)
            .map(f64::from)
            .ok_or_else(|| format!("`{text}` is not a concurrency (a whole number above 0)")),
        Model::Open => parse_rate(text).and_then(|r| {
            (r > 0.0)
                .then_some(r)
                .ok_or_else(|| format!("`{text}`: a step's rate must be above zero"))
        }),
    };
    value.map_err(|e| Error::config("--steps", e))
}

/// `loadgen merge`.
pub async fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let thresholds = args
        .thresholds
        .iter()
        .map(|t| Threshold::parse(t).map_err(|e| Error::config("--threshold", e)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(out) = &args.out_dir
        && let Some(input) = args.logs.iter().find(|input| out.is_within(input))
    {
        return Err(Error::config(
            "--out-dir",
            format!(
                "{out} is inside the input {input}: a later merge of {input} would count the \
                 merged log as one more worker"
            ),
        )
        .into());
    }
    let mut logs = Vec::new();
    for input in &args.logs {
        logs.extend(store::read_logs(input).await?);
    }
    let output = match &args.out_dir {
        Some(out) => Some(Output::open(out).await?),
        None => None,
    };
    let hlog = output.as_ref().map(|out| out.dir().join(HLOG_FILE));
    let (labels, logs): (Vec<String>, Vec<(PathBuf, Vec<u8>)>) = logs
        .into_iter()
        .map(|log| (log.label, (log.source, log.text)))
        .unzip();
    let merged = crate::merge::merge(&logs, args.interval, hlog.as_deref())?;
    let info = RunInfo {
        name: args.name.clone(),
        target: None,
        model: None,
        started_at: Some(merged.started_at),
        interrupted: false,
        aborted_by: None,
        merged_from: logs
            .iter()
            .map(|(path, _)| path.display().to_string())
            .collect(),
        // Merged logs carry no REPORT lines, so there is nothing to price.
        ..RunInfo::default()
    };
    let report = Report::new(info, &merged.measurements, &thresholds);
    publish(
        &report,
        output,
        args.json,
        false,
        &workers(&labels, &merged.inputs),
    )
    .await
}

/// The per-worker lines of a merge: how many logs, their labels, counts and rates.
fn workers(labels: &[String], inputs: &[InputTotals]) -> String {
    let mut text = format!(
        "\n  workers: {} ({}) · sum of their rates {:.1}/s\n",
        labels.len(),
        labels.join(", "),
        sum_of_rates(inputs)
    );
    for (label, input) in labels.iter().zip(inputs) {
        text.push_str(&format!(
            "    {label:<16} {:>10} requests in {:.1} s ({:.1}/s)\n",
            input.requests,
            input.span.as_secs_f64(),
            input.rate()
        ));
    }
    text
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

/// Writes the report files (and uploads them to S3), prints the summary (or the JSON report)
/// on stdout, followed by `notes` in the summary, and turns the verdict into the exit code.
async fn publish(
    report: &Report,
    output: Option<Output>,
    json: bool,
    allow_dropped: bool,
    notes: &str,
) -> anyhow::Result<ExitCode> {
    let written_to = match output {
        Some(out) => {
            report::write_files(out.dir(), report)?;
            let location = out.location().to_string();
            out.finish().await?;
            Some(location)
        }
        None => None,
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}{notes}", report.summary());
        if let Some(location) = written_to {
            println!("  reports written to {location}");
        }
    }
    let verdict = Verdict::of(report, allow_dropped);
    match verdict {
        Verdict::NoSuccess => eprintln!("no request succeeded"),
        Verdict::ScheduleNotHeld => eprintln!(
            "the generator could not hold its schedule (see \"generator saturated\"); \
             --allow-dropped accepts this"
        ),
        _ => {}
    }
    Ok(ExitCode::from(verdict.code()))
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
        std::process::exit(i32::from(Verdict::Interrupted.code()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Recorder, Sample};

    fn report(
        outcomes: &[Outcome],
        thresholds: &[&str],
        interrupted: bool,
        aborted: bool,
    ) -> Report {
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        for &outcome in outcomes {
            recorder.record(&Sample {
                outcome,
                detail: None,
                latency: Duration::from_millis(5),
                service_time: Duration::from_millis(5),
                send_lag: Duration::ZERO,
                report: None,
            });
        }
        recorder.rotate(Duration::from_secs(1));
        let thresholds: Vec<Threshold> = thresholds
            .iter()
            .map(|t| Threshold::parse(t).unwrap())
            .collect();
        let info = RunInfo {
            interrupted,
            aborted_by: aborted.then(|| thresholds[0].to_string()),
            ..RunInfo::default()
        };
        Report::new(info, &recorder.finish(Duration::from_secs(1)), &thresholds)
    }

    #[test]
    fn verdicts_and_their_exit_codes() {
        use Outcome::{Success, Throttle};
        let cases = [
            (report(&[Success], &[], false, false), Verdict::Passed, 0),
            (
                report(&[Success], &["p99 < 1ms"], false, false),
                Verdict::ThresholdFailed,
                1,
            ),
            // Aborted by a threshold: the run stopped early, but the threshold is the reason.
            (
                report(&[Success], &["p99 < 1ms"], true, true),
                Verdict::ThresholdFailed,
                1,
            ),
            (
                report(&[Throttle, Throttle], &[], false, false),
                Verdict::NoSuccess,
                3,
            ),
            (report(&[], &[], false, false), Verdict::NoSuccess, 3),
            // Ctrl-C wins: the run is incomplete, whatever its thresholds say.
            (
                report(&[Success], &[], true, false),
                Verdict::Interrupted,
                130,
            ),
            (
                report(&[Throttle], &["p99 < 1ms"], true, false),
                Verdict::Interrupted,
                130,
            ),
        ];
        for (i, (report, verdict, code)) in cases.into_iter().enumerate() {
            assert_eq!(Verdict::of(&report, false), verdict, "case {i}");
            assert_eq!(verdict.code(), code, "case {i}");
        }
    }
}
