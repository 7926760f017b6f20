//! Prometheus metrics end to end: an SQS mapping against moto counts into a registry that
//! `poller::metrics::serve` serves over HTTP; the scrape shows the CloudWatch-named series with the
//! values the run implies. And the Grafana dashboards in `dashboards/` use only metric names the code
//! exports, and every metric the code exports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::QueueAttributeName;
use e2e::{Sqs, eventually, processed_bodies, simulator, sqs_mapping, unique};
use loadgen::simulate::{FailureMode, FunctionConfig, Rule};
use poller::metrics::{Format, encode, serve};
use poller::stats::{Counters, MappingLabels, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What Prometheus sends (2.x): OpenMetrics preferred, the 0.0.4 text format as a fallback.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,\
     text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// 10 messages, BatchSize 1: 2 that no filter matches, 7 that succeed, 1 whose first invocation fails
/// (a function error) and that succeeds when it reappears after the visibility timeout. Every counter
/// then has one right value, and the scrape must show it on the mapping's series.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_mapping_counts_are_scraped_over_http() {
    let sqs = Sqs::new().await;
    let queue = sqs
        .create_queue(
            &unique("metrics"),
            &[(QueueAttributeName::VisibilityTimeout, "1".to_owned())],
        )
        .await;
    let mut bodies: Vec<(String, Option<String>)> =
        (0..7).map(|n| (format!(r#"{{"keep":true,"n":{n}}}"#), None)).collect();
    bodies.push((r#"{"keep":true,"n":7,"flaky":"fail-once"}"#.to_owned(), None));
    bodies.extend((8..10).map(|n| (format!(r#"{{"keep":false,"n":{n}}}"#), None)));
    let sent_from = now_millis();
    sqs.send(&queue, &bodies).await;

    let sim = simulator(FunctionConfig {
        failure_mode: FailureMode::Error,
        rules: vec![Rule {
            body_contains: Some("fail-once".to_owned()),
            times: Some(1),
            ..Rule::default()
        }],
        // Within the queue's 1 s visibility timeout, as AWS requires.
        timeout: Duration::from_secs(1),
        ..FunctionConfig::default()
    })
    .await;
    let json = sqs_mapping(
        &queue,
        "metrics-fn",
        r#""BatchSize":1,"FilterCriteria":{"Filters":[{"Pattern":"{\"body\":{\"keep\":[true]}}"}]}"#,
    );
    let mapping = poller::config::load(&json).expect("valid mapping");
    let labels = MappingLabels::of(&mapping);

    // The poller's wiring in miniature: one registry, the mapping's counters from it, the server on it.
    let metrics = Arc::new(Metrics::new());
    let counters = Arc::new(metrics.mapping(labels.clone()));
    let sdk = e2e::sdk_config().await;
    let target = lambda_invoke::Target::Lambda(lambda_invoke::LambdaTarget::new(
        &sdk,
        &mapping.function_name,
        Some(&sim.url()),
        Some(Duration::from_secs(30)),
    ));
    let sqs_source = poller::sqs::SqsMapping::connect(mapping, &sdk, target, counters.clone())
        .await
        .expect("queue found");
    let server_stop = CancellationToken::new();
    let (addr, server) = serve(
        "127.0.0.1:0".parse().expect("address"),
        metrics.clone(),
        Duration::from_secs(60),
        server_stop.clone(),
    )
    .await
    .expect("metrics server binds");
    let cancel = CancellationToken::new();
    let running = tokio::spawn(Arc::new(sqs_source).run(cancel.clone()));

    eventually(
        Duration::from_secs(60),
        "8 messages processed and the queue empty",
        || async { processed_bodies(&sim.invocations()).len() == 8 && sqs.depth(&queue).await == 0 },
    )
    .await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("mapping stops")
        .expect("mapping task");
    let scraped_at = now_millis();

    let scrape = get(addr, "/metrics", None).await;
    assert_eq!(scrape.status, 200);
    assert_eq!(scrape.content_type, "text/plain; version=0.0.4; charset=utf-8");
    let scraped = samples(&scrape.body);
    let of_mapping = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        [
            ("mapping", labels.mapping.as_str()),
            ("source", &labels.source),
            ("function", &labels.function),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let value = |name: &str| -> f64 {
        let series = (name.to_owned(), of_mapping(&[]));
        *scraped
            .get(&series)
            .unwrap_or_else(|| panic!("no {series:?} in\n{}", scrape.body))
    };
    let expected = [
        ("poller_polled_events_total", 11.0), // 10 + the failed message once more
        ("poller_filtered_out_events_total", 2.0),
        ("poller_invoked_events_total", 9.0),
        ("poller_invocations_total", 9.0),
        ("poller_errors_total", 1.0),
        ("poller_failed_invoke_events_total", 1.0),
        ("poller_deleted_events_total", 10.0), // 8 processed + 2 filtered out
        ("poller_throttles_total", 0.0),
        ("poller_invoke_request_errors_total", 0.0),
        ("poller_dropped_events_total", 0.0),
        ("poller_on_failure_destination_delivered_events_total", 0.0),
        ("poller_checkpoints_total", 0.0),
        ("poller_concurrent_executions", 0.0),
        ("poller_invocation_duration_seconds_count", 9.0),
    ];
    for (name, want) in expected {
        assert_eq!(value(name), want, "{name}");
    }
    let report = counters.snapshot();
    assert_eq!(
        value("poller_polled_events_total"),
        report.polled as f64,
        "the exit report reads the same series"
    );
    let all_buckets = (
        "poller_invocation_duration_seconds_bucket".to_owned(),
        of_mapping(&[("le", "+Inf")]),
    );
    assert_eq!(scraped[&all_buckets], 9.0);
    assert!(value("poller_invocation_duration_seconds_sum") > 0.0);
    // The last receive that returned a message was the failed one, back after its visibility timeout.
    let age = value("poller_message_age_milliseconds");
    assert!(
        (1_000.0..=(scraped_at - sent_from) as f64).contains(&age),
        "message age {age} ms: at least the visibility timeout, at most the test's age"
    );

    // Prometheus gets the same series as OpenMetrics.
    let open = get(addr, "/metrics", Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(
        open.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    assert_eq!(samples(&open.body), scraped);
    assert_eq!(get(addr, "/other", None).await.status, 404);

    server_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .expect("server task");
}

/// Every `poller_…` metric a dashboard (panel or template variable) uses is exported, and the poller
/// dashboards (`dashboards/poller*.json`) show every exported metric.
#[test]
fn dashboards_use_exactly_the_exported_metrics() {
    let exported = exported_series();
    let families: BTreeSet<&str> = exported.values().map(String::as_str).collect();
    let mut shown = BTreeSet::new();
    let dashboards = dashboard_files();
    for path in &dashboards {
        let text = std::fs::read_to_string(path).expect("dashboard readable");
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("poller"));
        if ours {
            check_structure(path, &dashboard);
        }
        let mut queries = Vec::new();
        collect_queries(&dashboard, &mut queries);
        for query in queries {
            let names = metric_names(&query);
            assert!(
                !ours || !names.is_empty(),
                "{}: query uses no poller metric: {query}",
                path.display()
            );
            for name in names {
                let family = exported.get(&name).unwrap_or_else(|| {
                    panic!(
                        "{}: `{name}` (in `{query}`) is not exported; exported: {:?}",
                        path.display(),
                        exported.keys()
                    )
                });
                if ours {
                    shown.insert(family.as_str());
                }
            }
        }
    }
    assert!(!shown.is_empty(), "no poller dashboard in {:?}", dashboards);
    let missing: Vec<&&str> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "exported but on no poller dashboard: {missing:?}");
}

/// Sample name → family name of everything the code exports, read from the encoded registry of a
/// mapping that has recorded something in every family.
fn exported_series() -> BTreeMap<String, String> {
    let metrics = Metrics::new();
    let counters = metrics.mapping(MappingLabels::default());
    // The only family without a series until a stream batch is done.
    counters.batch_done("shardId-000000000000", now_millis());
    Counters::add(&counters.polled, 1);
    let text = encode(&metrics, Format::OpenMetrics);
    let mut family = String::new();
    let mut series = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap_or_default().to_owned();
        } else if !line.starts_with('#') {
            series.insert(sample_name(line).to_owned(), family.clone());
        }
    }
    series
}

/// The dashboard is importable and provisionable the way docs/metrics.md says: Grafana's JSON model
/// with a Prometheus datasource variable every panel uses, and a `mapping` variable.
fn check_structure(path: &Path, dashboard: &serde_json::Value) {
    let at = path.display();
    assert!(
        dashboard["uid"].is_string() && dashboard["title"].is_string(),
        "{at}: uid and title"
    );
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{at}: schemaVersion"
    );
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    let datasource = variable("datasource").unwrap_or_else(|| panic!("{at}: no datasource variable"));
    assert_eq!(datasource["type"], "datasource", "{at}");
    assert_eq!(datasource["query"], "prometheus", "{at}");
    assert!(variable("mapping").is_some(), "{at}: no mapping variable");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "{at}: duplicate panel id {}",
            panel["id"]
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{at}: panel {}",
            panel["title"]
        );
        assert!(
            panel["gridPos"]["w"].is_u64() && panel["gridPos"]["h"].is_u64(),
            "{at}: panel {}",
            panel["title"]
        );
    }
}

/// Every PromQL text in the dashboard: panel target `expr`s and template variable queries.
fn collect_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(q)) => out.push(q.clone()),
                    // Template variable queries; a datasource variable's query is the plugin id.
                    ("query", serde_json::Value::String(q)) if q.contains('(') => out.push(q.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// The `poller_…` identifiers in a PromQL expression.
fn metric_names(query: &str) -> BTreeSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("poller_"))
        .map(str::to_owned)
        .collect()
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

fn dashboard_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// A series: metric name and labels (ordered by name: the two formats order them differently).
type Series = (String, BTreeMap<String, String>);

/// Series → value, from the samples of a text exposition.
fn samples(text: &str) -> BTreeMap<Series, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect("closing brace"))),
                None => (series, BTreeMap::new()),
            };
            (
                (name.to_owned(), labels),
                value.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
            )
        })
        .collect()
}

/// `k="v",k2="v2"` with the format's escapes (`\\`, `\"`, `\n`) in values.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("label in {text}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("dangling escape in {text}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated value in {text}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    labels
}

fn sample_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or_default()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64
}

struct HttpResponse {
    status: u16,
    content_type: String,
    body: String,
}

/// A minimal HTTP/1.1 GET (one request per connection), enough for a scrape.
async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "a scrape has a Content-Length: {head}"
    );
    HttpResponse {
        status,
        content_type,
        body: body.to_owned(),
    }
}
