//! `loadgen run` as oha, hey, vegeta and k6 users drive it, end to end in process: a URL argument
//! with one-letter flags, methods, headers and bodies; payload files; `--abort-on-fail`; exit
//! codes for runs without a success.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde_json::Value;

mod common;
use common::{exit_code, in_process, simulator};

/// `loadgen run ARGS` in process, without metrics server or progress bar.
async fn loadgen(args: &[&str]) -> anyhow::Result<ExitCode> {
    in_process(&[&["run", "--metrics-addr", "off", "--no-progress"], args].concat()).await
}

/// What one request brought to the stand-in endpoint.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    api_key: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// An HTTP endpoint that answers 200 and records every request, in arrival order.
async fn endpoint() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |request: Request| {
        let record = Arc::clone(&record);
        async move {
            let (parts, body) = request.into_parts();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let body = body.collect().await.unwrap().to_bytes();
            record.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                api_key: header("x-api-key"),
                content_type: header("content-type"),
                body: String::from_utf8(body.to_vec()).unwrap(),
            });
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/orders", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn a_url_with_oha_flags_sends_the_method_headers_and_body() {
    let (url, seen) = endpoint().await;
    let exit = loadgen(&[
        &url,
        "-n",
        "5",
        "-c",
        "1",
        "-m",
        "PUT",
        "-H",
        "X-Api-Key: secret-1",
        "-H",
        "Content-Type: text/plain",
        "-d",
        "order {{seq}}",
    ])
    .await
    .unwrap();
    assert_eq!(exit_code(exit), exit_code(ExitCode::SUCCESS));
    let seen = seen.lock().unwrap();
    let bodies: Vec<&str> = seen.iter().map(|s| s.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["order 0", "order 1", "order 2", "order 3", "order 4"]
    );
    for s in seen.iter() {
        assert_eq!(s.method, "PUT");
        assert_eq!(s.api_key.as_deref(), Some("secret-1"));
        assert_eq!(s.content_type.as_deref(), Some("text/plain"));
    }
}

#[tokio::test]
async fn payloads_go_round_robin_or_at_random_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("orders.jsonl");
    std::fs::write(&jsonl, "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n").unwrap();
    let csv = dir.path().join("orders.csv");
    std::fs::write(&csv, "id,note\n7,\"a, b\"\n8,c\n").unwrap();

    let bodies = |seen: &Mutex<Vec<Seen>>| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|s| s.body.clone())
            .collect()
    };
    let (url, seen) = endpoint().await;
    let exit = loadgen(&[
        &url,
        "-n",
        "7",
        "-c",
        "1",
        "--payloads",
        jsonl.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert_eq!(exit_code(exit), exit_code(ExitCode::SUCCESS));
    let ids = ["{\"id\":1}", "{\"id\":2}", "{\"id\":3}"];
    let expected: Vec<&str> = ids.iter().cycle().take(7).copied().collect();
    assert_eq!(bodies(&seen), expected);

    let (url, seen) = endpoint().await;
    loadgen(&[
        &url,
        "-n",
        "2",
        "-c",
        "1",
        "--payloads",
        csv.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let rows: Vec<Value> = bodies(&seen)
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(rows[0], serde_json::json!({"id": "7", "note": "a, b"}));
    assert_eq!(rows[1], serde_json::json!({"id": "8", "note": "c"}));

    let random = |seed: &'static str| {
        let jsonl = jsonl.clone();
        async move {
            let (url, seen) = endpoint().await;
            let args = [
                url.as_str(),
                "-n",
                "30",
                "-c",
                "1",
                "--payloads",
                jsonl.to_str().unwrap(),
                "--payload-order",
                "random",
                "--seed",
                seed,
            ];
            loadgen(&args).await.unwrap();
            bodies(&seen)
        }
    };
    let (a, b, c) = (random("7").await, random("7").await, random("8").await);
    assert_eq!(a, b, "the same seed draws the same payloads");
    assert_ne!(a, c);
    let distinct: std::collections::BTreeSet<&String> = a.iter().collect();
    assert_eq!(distinct.len(), 3, "{a:?}");
}

/// A threshold that fails early stops a 60 s run at once, and the report says which one.
#[tokio::test]
async fn abort_on_fail_stops_the_run_at_the_first_breach() {
    let sim = simulator("50ms").await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/http/slow", sim.url());
    let exit = loadgen(&[
        &url,
        "-q",
        "20",
        "-z",
        "60s",
        "--interval",
        "200ms",
        "--threshold",
        "p99 < 10ms",
        "--threshold",
        "requests > 100000",
        "--abort-on-fail",
        "--out-dir",
        dir.path().to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert_eq!(exit_code(exit), exit_code(ExitCode::from(1)));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["aborted_by"], "p99 < 10ms");
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["passed"], false);
    // Stopped long before its 60 s, however loaded the machine is.
    let duration = report["duration_s"].as_f64().unwrap();
    assert!(duration < 30.0, "{duration} s");
    let sent = sim
        .stats()
        .functions
        .get("slow")
        .map_or(0, |f| f.invocations);
    assert!(sent < 600, "{sent} invocations");
}

/// Without `--abort-on-fail` the same breach only fails the run at its end.
#[tokio::test]
async fn without_abort_on_fail_the_run_goes_to_its_end() {
    let sim = simulator("20ms").await;
    let url = format!("{}/http/slow", sim.url());
    let exit = loadgen(&[
        &url,
        "-q",
        "20",
        "-z",
        "1s",
        "--threshold",
        "p99 < 10ms",
        "--json",
    ])
    .await
    .unwrap();
    assert_eq!(exit_code(exit), exit_code(ExitCode::from(1)));
    let sent = sim.stats().functions["slow"].invocations;
    assert!((20..=21).contains(&sent), "{sent} invocations");
}

/// Nothing answered: no success, so no pass, even without thresholds.
#[tokio::test]
async fn a_run_without_a_success_exits_with_3() {
    // A port that was just free: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let exit = loadgen(&[&url, "-n", "3", "-c", "1"]).await.unwrap();
    assert_eq!(exit_code(exit), exit_code(ExitCode::from(3)));
}
