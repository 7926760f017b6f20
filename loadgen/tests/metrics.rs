//! Prometheus metrics over real loopback HTTP: a run against the in-process simulator, scraped
//! while it goes and at its end, must show what its report counts, and the simulator's own
//! `/metrics` the same invocations from the function's side. Then the CLI's `--metrics-addr`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{exit_code, in_process, lambda, start};
use loadgen::metrics::{self, RunMetrics};
use loadgen::run::{Outcome, execute};
use loadgen::plan::Plan;
use loadgen::scenario::Scenario;
use loadgen::simulate::{FunctionConfig, SimConfig, SimHandle};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What Prometheus sends: OpenMetrics preferred, the 0.0.4 text format as a fallback.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
     text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

async fn simulator(function: FunctionConfig) -> SimHandle {
    start(SimConfig {
        seed: Some(7),
        default: function,
        ..SimConfig::default()
    })
    .await
}


/// Scrapes `addr` every 10 ms until a scrape's samples satisfy `live`, and returns them. Waiting
/// on the condition, not a fixed delay, keeps a loaded machine (a run that starts late, a server
/// not yet bound) from scraping before or after the moment under test. Panics after 30 s.
async fn scrape_until(
    addr: SocketAddr,
    live: impl Fn(&BTreeMap<Series, f64>) -> bool,
) -> BTreeMap<Series, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    let mut last = None;
    loop {
        if let Ok(response) = client.get(format!("http://{addr}/metrics")).send().await {
            let samples = samples(&response.text().await.unwrap());
            if live(&samples) {
                return samples;
            }
            last = Some(samples);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scrape of {addr} met the condition in 30 s; the last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A series: metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// Series → value, from the samples of a text exposition. Label values are unescaped (`\\`, `\"`,
/// `\n`): an error label can carry any text, quotes and commas included.
fn samples(text: &str) -> BTreeMap<Series, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').expect("closing brace");
                    (name, parse_labels(labels))
                }
                None => (series, BTreeMap::new()),
            };
            ((name.to_owned(), labels), value.parse().expect("a number"))
        })
        .collect()
}

/// `a="x",b="y \"z\""` → {a: x, b: y "z"}.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escaped character").1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

#[test]
fn label_values_with_quotes_and_commas_are_read_whole() {
    let labels = parse_labels(r#"error="transport error: \"x\", y\\z",outcome="error""#);
    assert_eq!(labels["error"], r#"transport error: "x", y\z"#);
    assert_eq!(labels["outcome"], "error");
}

/// The sum of every series of `name` whose labels include `with`.
fn sum(samples: &BTreeMap<Series, f64>, name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, value)| value)
        .sum()
}

struct Scrape {
    content_type: String,
    body: String,
}

async fn scrape(addr: SocketAddr, accept: Option<&str>) -> Scrape {
    let mut request = reqwest::Client::new().get(format!("http://{addr}/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    Scrape {
        content_type,
        body: response.text().await.unwrap(),
    }
}

/// 400 requests per second at a function that runs 2 at a time for 10 ms (200 per second): about
/// half are throttled, a fifth of the rest fail, the first two are cold starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_scraped_live_and_its_totals_match_the_report_and_the_simulator() {
    let sim = simulator(FunctionConfig {
        latency: "10ms".parse().unwrap(),
        cold_start: "5ms".parse().unwrap(),
        reserved_concurrency: Some(2),
        error_rate: 0.2,
        ..FunctionConfig::default()
    })
    .await;
    let scenario: Scenario = toml::from_str(
        "[target]\nfunction = \"f\"\nlog_tail = true\n[load]\nrate = 400\nduration = \"4s\"\n",
    )
    .unwrap();
    let plan = Plan::new(scenario, Path::new(".")).unwrap();
    let mut run_metrics = RunMetrics::new(&plan);
    let mut registry = Registry::default();
    run_metrics.register(&mut registry);
    let server_stop = CancellationToken::new();
    let (addr, server) = metrics::serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(registry),
        server_stop.clone(),
    )
    .await
    .unwrap();

    let target = lambda(&sim, "f").await;
    let stop = CancellationToken::new();
    let mut no_sink = ();
    // While sending (the target gauge falls to 0 when the schedule ends), with requests in
    // flight and some counted. A task of its own: in the run's task, the scrapes would wait
    // whenever a run behind schedule on a loaded machine sends without yielding.
    let watch = tokio::spawn(scrape_until(addr, |live| {
        sum(live, "loadgen_target_rate", &[]) == 400.0
            && sum(live, "loadgen_concurrent_executions", &[]) >= 1.0
            && sum(live, "loadgen_invocations_total", &[]) >= 1.0
    }));
    let run = execute(&plan, target, &stop, &mut no_sink, &mut run_metrics).await;
    let live = watch.await.unwrap();
    // Counted live: part of the run, not all of it.
    let live_requests = sum(&live, "loadgen_invocations_total", &[]);
    assert!(
        live_requests < run.sent as f64,
        "mid-run: {live_requests} of {}",
        run.sent
    );

    let end = scrape(addr, None).await;
    assert_eq!(end.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let end_samples = samples(&end.body);
    let value = |name: &str, with: &[(&str, &str)]| sum(&end_samples, name, with);
    let m = &run.measurements;
    let count = |outcome: Outcome| m.latency.count(outcome) as f64;
    for outcome in Outcome::ALL {
        assert_eq!(
            value(
                "loadgen_invocations_total",
                &[
                    ("outcome", outcome.as_str()),
                    ("invocation_type", "RequestResponse")
                ]
            ),
            count(outcome),
            "{outcome}"
        );
        assert_eq!(
            value(
                "loadgen_duration_seconds_count",
                &[("outcome", outcome.as_str())]
            ),
            count(outcome),
            "{outcome}"
        );
    }
    assert!(count(Outcome::Throttle) > 0.0 && count(Outcome::FunctionError) > 0.0);
    assert_eq!(value("loadgen_invocations_total", &[]), run.sent as f64);
    assert_eq!(
        value("loadgen_duration_seconds_bucket", &[("le", "+Inf")]),
        run.sent as f64
    );
    let reason = "ReservedFunctionConcurrentInvocationLimitExceeded";
    assert_eq!(
        value("loadgen_throttles_total", &[("reason", reason)]),
        count(Outcome::Throttle)
    );
    assert_eq!(
        value("loadgen_errors_total", &[("error", "Unhandled")]),
        count(Outcome::FunctionError)
    );
    let cold_starts = m.cold_starts.as_ref().expect("log tails").len() as f64;
    assert_eq!(value("loadgen_cold_starts_total", &[]), cold_starts);
    let late = m.send.as_ref().expect("a live run").late as f64;
    assert_eq!(value("loadgen_late_sends_total", &[]), late);
    assert_eq!(value("loadgen_concurrent_executions", &[]), 0.0);
    assert_eq!(value("loadgen_target_rate", &[]), 0.0, "done sending");
    // The histogram's sum is the corrected latency in seconds: at least 10 ms per run invocation.
    let ran = count(Outcome::Success) + count(Outcome::FunctionError);
    assert!(value("loadgen_duration_seconds_sum", &[]) >= ran * 0.010);

    // Prometheus itself gets OpenMetrics, with the same samples.
    let open = scrape(addr, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(
        open.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.body.ends_with("# EOF\n"));
    assert_eq!(samples(&open.body), end_samples);

    // The function's side: what ran, failed, was throttled, started cold.
    let function = samples(&scrape(sim.addr(), None).await.body);
    let of_f = |name: &str| sum(&function, name, &[("function", "f")]);
    assert_eq!(of_f("loadgen_simulator_invocations_total"), ran);
    assert_eq!(
        of_f("loadgen_simulator_errors_total"),
        count(Outcome::FunctionError)
    );
    assert_eq!(
        of_f("loadgen_simulator_throttles_total"),
        count(Outcome::Throttle)
    );
    assert_eq!(of_f("loadgen_simulator_cold_starts_total"), cold_starts);
    assert_eq!(of_f("loadgen_simulator_concurrent_executions"), 0.0);
    assert_eq!(of_f("loadgen_simulator_environments"), 2.0);

    server_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap();
}

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_serves_metrics_at_the_address_given() {
    let sim = simulator(FunctionConfig::default()).await;
    let url = format!("{}/http/f", sim.url());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics_addr = addr.to_string();
    let args = [
        "run",
        "--target-url",
        &url,
        "--rate",
        "50",
        "--duration",
        "1500ms",
        "--metrics-addr",
        &metrics_addr,
        // A loaded machine may keep the last sends from going out before the end (exit 4).
        "--allow-dropped",
    ];
    let run = in_process(&args);
    // Served while the run goes: a success is counted before the run's end.
    let watch = scrape_until(addr, |live| {
        sum(live, "loadgen_invocations_total", &[("outcome", "success")]) > 0.0
    });
    let (code, live) = tokio::join!(run, watch);
    assert_eq!(exit_code(code.unwrap()), exit_code(ExitCode::SUCCESS));
    assert_eq!(sum(&live, "loadgen_target_rate", &[]), 50.0);
}

#[tokio::test]
async fn a_taken_address_fails_the_run_unless_it_is_the_default() {
    let sim = simulator(FunctionConfig::default()).await;
    let url = format!("{}/http/f", sim.url());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let short = [
        "run",
        "--target-url",
        &url,
        "--rate",
        "100",
        "--requests",
        "5",
    ];
    let given = [&short[..], &["--metrics-addr", &taken_addr]].concat();
    let error = in_process(&given).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot bind {taken_addr}")),
        "{error}"
    );

    // The default address is taken here (by this listener, or by another run): the run goes on.
    let _default = std::net::TcpListener::bind(metrics::DEFAULT_ADDR);
    assert_eq!(exit_code(in_process(&short).await.unwrap()), exit_code(ExitCode::SUCCESS));
    let off = [&short[..], &["--metrics-addr", "off"]].concat();
    assert_eq!(exit_code(in_process(&off).await.unwrap()), exit_code(ExitCode::SUCCESS));
    let bad = [&short[..], &["--metrics-addr", "nowhere"]].concat();
    let error = in_process(&bad).await.unwrap_err();
    assert!(
        error.to_string().contains("use HOST:PORT or off"),
        "{error}"
    );
}
