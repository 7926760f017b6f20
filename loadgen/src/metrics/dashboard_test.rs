//! `dashboards/loadgen.json` shows exactly what the code exports: every `loadgen_…` name in a panel
//! or variable query is a sample name that the registries encode, and every exported family is on
//! the dashboard. The exported names come from the encoded output itself, not from a list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use lambda_invoke::InvocationType;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::{Format, RunMetrics, encode};
use crate::model::{Outcome, ReportLine, Sample};
use crate::plan::Plan;
use crate::scenario::Scenario;
use crate::simulate::{SimConfig, Simulator};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/loadgen.json");

#[tokio::test]
async fn the_loadgen_dashboard_uses_exactly_the_exported_metrics() {
    let exported = exported_series().await;
    let families: BTreeSet<&str> = exported.values().map(String::as_str).collect();
    let text = std::fs::read_to_string(DASHBOARD).expect("dashboard readable");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    check_structure(&dashboard);
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    let mut shown = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "query uses no loadgen metric: {query}");
        for name in names {
            let family = exported.get(&name).unwrap_or_else(|| {
                panic!(
                    "`{name}` (in `{query}`) is not exported; exported: {:?}",
                    exported.keys()
                )
            });
            shown.insert(family.as_str());
        }
    }
    let missing: Vec<&&str> = families.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "exported but not on the dashboard: {missing:?}"
    );
}

/// Sample name → family name of everything both tools export: the run metrics of both load
/// models with every outcome recorded, and a simulator that ran one invocation.
async fn exported_series() -> BTreeMap<String, String> {
    let mut series = BTreeMap::new();
    for load in ["rate = 5", "concurrency = 5"] {
        let toml_text = format!(
            "[target]\nfunction = \"f\"\nlog_tail = true\n[load]\n{load}\nduration = \"1s\"\n"
        );
        let scenario: Scenario = toml::from_str(&toml_text).unwrap();
        let mut metrics = RunMetrics::new(&Plan::new(scenario, Path::new(".")).unwrap());
        for outcome in Outcome::ALL {
            let sample = Sample {
                outcome,
                detail: Some("detail".to_owned()),
                latency: Duration::from_millis(5),
                service_time: Duration::from_millis(5),
                send_lag: Duration::from_secs(1),
                report: Some(ReportLine::cold(Duration::from_millis(100))),
            };
            metrics.completed(&sample, InvocationType::RequestResponse, 0);
        }
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        add_series(&encode(&registry, Format::OpenMetrics), &mut series);
    }

    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let invoke = format!("{}/2015-03-31/functions/f/invocations", sim.url());
    let response = client.post(invoke).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = client
        .get(format!("{}/metrics", sim.url()))
        .header("accept", "application/openmetrics-text")
        .send()
        .await;
    let text = metrics.unwrap().text().await.unwrap();
    add_series(&text, &mut series);
    sim.shutdown().await.unwrap();
    series
}

/// Adds the sample names of an OpenMetrics text, each with its family (from `# TYPE`).
fn add_series(text: &str, series: &mut BTreeMap<String, String>) {
    let mut family = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap_or_default();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            series.insert(name.to_owned(), family.to_owned());
        }
    }
}

/// Importable and provisionable as docs/metrics.md says: Grafana's JSON model, a Prometheus
/// datasource variable that every panel uses, and the `instance` and `function` variables.
fn check_structure(dashboard: &Value) {
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    let datasource = variable("datasource").expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert!(variable("instance").is_some() && variable("function").is_some());
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = &panel["title"];
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "{title}: duplicate id"
        );
        assert!(
            panel["gridPos"]["w"].is_u64() && panel["gridPos"]["h"].is_u64(),
            "{title}"
        );
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
}

/// Every PromQL text: panel target `expr`s and template variable queries.
fn collect_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(q)) => out.push(q.clone()),
                    // A datasource variable's query is the plugin id, not PromQL.
                    ("query", Value::String(q)) if q.contains('(') => out.push(q.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// The `loadgen_…` identifiers in a PromQL expression.
fn metric_names(query: &str) -> BTreeSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("loadgen_"))
        .map(str::to_owned)
        .collect()
}
