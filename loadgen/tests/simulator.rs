//! The function simulator over real loopback HTTP.

use std::time::{Duration, Instant};

use base64::Engine as _;
use loadgen::simulate::{
    Endpoint, FailureMode, FunctionConfig, Invocation, InvocationResult, InvocationType, Rule,
    RuleAction, SimConfig, SimHandle, Simulator, Stats,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;
use common::start;

fn recording(default: FunctionConfig) -> SimConfig {
    SimConfig {
        record: true,
        default,
        ..SimConfig::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Invokes through the Invoke API with optional extra headers.
async fn invoke(
    sim: &SimHandle,
    function: &str,
    payload: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    invoke_raw(sim, function, payload.to_string(), headers).await
}

async fn invoke_raw(
    sim: &SimHandle,
    function: &str,
    body: String,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let url = format!("{}/2015-03-31/functions/{function}/invocations", sim.url());
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn sqs(bodies: &[&str]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| json!({"messageId": format!("msg-{i}"), "body": body, "eventSource": "aws:sqs"}))
        .collect();
    json!({ "Records": records })
}

fn fail_if_contains(text: &str) -> Rule {
    Rule {
        body_contains: Some(text.to_owned()),
        ..Rule::default()
    }
}

fn log_tail(response: &reqwest::Response) -> String {
    let encoded = header(response, "x-amz-log-result").expect("X-Amz-Log-Result");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn request_response_returns_the_result_and_version() {
    let sim = start(SimConfig::default()).await;
    let response = invoke(&sim, "my-fn", &json!({"hello": 1}), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-amz-executed-version"), Some("$LATEST"));
    assert_eq!(header(&response, "x-amz-function-error"), None);
    assert_eq!(header(&response, "x-amz-log-result"), None);
    assert!(header(&response, "x-amzn-requestid").is_some_and(|id| id.len() == 36));
    assert_eq!(response.text().await.unwrap(), "null");

    let pinned = invoke_raw(
        &sim,
        "my-fn",
        "{}".into(),
        &[("x-amz-invocation-type", "RequestResponse")],
    )
    .await;
    assert_eq!(pinned.status(), StatusCode::OK);
    let url = format!(
        "{}/2015-03-31/functions/my-fn/invocations?Qualifier=7",
        sim.url()
    );
    let versioned = reqwest::Client::new()
        .post(url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&versioned, "x-amz-executed-version"), Some("7"));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn arn_function_names_resolve_to_the_function() {
    let sim = start(recording(FunctionConfig::default())).await;
    let arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aorders%3Aprod";
    assert_eq!(
        invoke(&sim, arn, &json!({}), &[]).await.status(),
        StatusCode::OK
    );
    let invocation = &sim.invocations()[0];
    assert_eq!(
        (
            invocation.function.as_str(),
            invocation.qualifier.as_deref()
        ),
        ("orders", Some("prod"))
    );
    assert_eq!(sim.stats().functions.keys().collect::<Vec<_>>(), ["orders"]);
}

#[tokio::test]
async fn function_errors_are_200_with_unhandled_over_invoke_and_500_over_http() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            error_rate: 1.0,
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let response = invoke(&sim, "f", &json!({}), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-amz-function-error"), Some("Unhandled"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errorType": "SimulatedError", "errorMessage": "simulated failure (error_rate 1)"})
    );

    let http = reqwest::Client::new()
        .post(format!("{}/http/f", sim.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(http.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        http.json::<Value>().await.unwrap()["errorType"],
        "SimulatedError"
    );
    assert_eq!(sim.stats().functions["f"].errors, 2);
}

#[tokio::test]
async fn timeouts_report_sandbox_timedout_and_recycle_the_environment() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            // Far above the timeout, so the bound below is no wall-clock margin: an execution
            // that ignored the timeout would take 60 s.
            latency: "60s".parse().unwrap(),
            timeout: ms(20),
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    for _ in 0..2 {
        let started = Instant::now();
        let response = invoke(&sim, "f", &json!({}), &[("x-amz-log-type", "Tail")]).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= ms(20) && elapsed < Duration::from_secs(30),
            "{elapsed:?}"
        );
        assert_eq!(header(&response, "x-amz-function-error"), Some("Unhandled"));
        let request_id = header(&response, "x-amzn-requestid").unwrap().to_owned();
        // A timed-out environment is not reused: every invocation is cold.
        assert!(log_tail(&response).contains("Init Duration: "));
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!("RequestId: {request_id} Error: Task timed out after 0.02 seconds"),
            })
        );
    }
    let stats = &sim.stats().functions["f"];
    assert_eq!(
        (
            stats.invocations,
            stats.errors,
            stats.timeouts,
            stats.cold_starts
        ),
        (2, 2, 2, 2)
    );
}

#[tokio::test]
async fn concurrency_above_the_reserved_limit_is_throttled_with_reason() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            latency: "300ms".parse().unwrap(),
            reserved_concurrency: Some(2),
            retry_after_secs: Some(1),
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let empty = json!({});
    let requests = (0..5).map(|_| invoke(&sim, "f", &empty, &[]));
    let responses = futures::future::join_all(requests).await;
    let mut ok = 0;
    let mut throttled = 0;
    for response in responses {
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                assert_eq!(
                    header(&response, "x-amzn-errortype"),
                    Some("TooManyRequestsException")
                );
                assert_eq!(header(&response, "retry-after"), Some("1"));
                assert!(header(&response, "x-amzn-requestid").is_some());
                let body: Value = response.json().await.unwrap();
                assert_eq!(
                    body,
                    json!({
                        "Type": "User",
                        "message": "Rate Exceeded.",
                        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                    })
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, throttled), (2, 3));
    let stats = &sim.stats().functions["f"];
    assert_eq!(
        (stats.invocations, stats.throttles, stats.cold_starts),
        (2, 3, 2)
    );
    assert_eq!((stats.concurrency, stats.environments), (0, 2));

    // Capacity is back once the running invocations finished.
    assert_eq!(
        invoke(&sim, "f", &json!({}), &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn plain_http_endpoint_throttles_with_429() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            reserved_concurrency: Some(0),
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/http/f", sim.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(
        response.json::<Value>().await.unwrap()["Reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
}

#[tokio::test]
async fn undeclared_functions_are_not_found_when_functions_are_declared() {
    let mut config = SimConfig::default();
    config
        .functions
        .insert("orders".to_owned(), FunctionConfig::default());
    let sim = start(config).await;
    let response = invoke(&sim, "payments", &json!({}), &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header(&response, "x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"Type": "User", "Message": "Function not found: payments"})
    );
    let http = reqwest::Client::new()
        .post(format!("{}/http/payments", sim.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(http.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        invoke(&sim, "orders", &json!({}), &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_requests_are_rejected_before_the_function_runs() {
    let sim = start(SimConfig::default()).await;
    let not_json = invoke_raw(&sim, "f", "{not json".into(), &[]).await;
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&not_json, "x-amzn-errortype"),
        Some("InvalidRequestContentException")
    );
    let body: Value = not_json.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Could not parse request body into json: ")
    );

    let bad_type = invoke_raw(&sim, "f", "{}".into(), &[("x-amz-invocation-type", "Sync")]).await;
    assert_eq!(bad_type.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&bad_type, "x-amzn-errortype"),
        Some("InvalidParameterValueException")
    );

    // A JSON string of exactly 6,291,456 bytes is accepted; one byte more is too large.
    let at_limit = format!("\"{}\"", "a".repeat(6_291_456 - 2));
    assert_eq!(
        invoke_raw(&sim, "f", at_limit.clone(), &[]).await.status(),
        StatusCode::OK
    );
    let too_large = invoke_raw(&sim, "f", format!("{at_limit} "), &[]).await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        header(&too_large, "x-amzn-errortype"),
        Some("RequestTooLargeException")
    );

    // Asynchronous invocations allow 1 MB.
    let event = [("x-amz-invocation-type", "Event")];
    let async_limit = format!("\"{}\"", "a".repeat(1_048_576 - 2));
    assert_eq!(
        invoke_raw(&sim, "f", async_limit.clone(), &event)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let async_too_large = invoke_raw(&sim, "f", format!("{async_limit} "), &event).await;
    assert_eq!(async_too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn event_is_202_and_still_runs_dry_run_is_204_and_does_not() {
    let sim = start(recording(FunctionConfig {
        latency: "2s".parse().unwrap(),
        ..FunctionConfig::default()
    }))
    .await;
    let dry = invoke(
        &sim,
        "f",
        &json!({"x": 1}),
        &[("x-amz-invocation-type", "DryRun")],
    )
    .await;
    assert_eq!(dry.status(), StatusCode::NO_CONTENT);
    assert_eq!(dry.text().await.unwrap(), "");

    let event = invoke(
        &sim,
        "f",
        &sqs(&["a"]),
        &[("x-amz-invocation-type", "Event")],
    )
    .await;
    assert_eq!(event.status(), StatusCode::ACCEPTED);
    // An execution is recorded when it ends, 2 s after it starts: a 202 sent after it would
    // find it recorded. Ordering, not a wall-clock bound on the response.
    assert!(
        sim.invocations().is_empty(),
        "Event must not wait for the execution"
    );
    assert_eq!(event.text().await.unwrap(), "");

    // The execution finishes in the background and is then counted and recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.invocations().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(ms(10)).await;
    }
    let log = sim.invocations();
    assert_eq!(log.len(), 1, "the DryRun must not run, the Event must");
    assert_eq!(log[0].invocation_type, InvocationType::Event);
    assert_eq!(log[0].records_ok, ["msg-0"]);
    let stats = &sim.stats().functions["f"];
    assert_eq!((stats.invocations, stats.records_ok), (1, 1));
}

#[tokio::test]
async fn shutdown_waits_for_background_events() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            latency: "50ms".parse().unwrap(),
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let event = invoke(&sim, "f", &json!({}), &[("x-amz-invocation-type", "Event")]).await;
    assert_eq!(event.status(), StatusCode::ACCEPTED);
    let url = sim.url();
    let started = Instant::now();
    sim.shutdown().await.unwrap();
    assert!(
        started.elapsed() >= ms(40),
        "shutdown returned after {:?}",
        started.elapsed()
    );
    assert!(
        reqwest::Client::new()
            .post(format!("{url}/http/f"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tail_log_has_init_duration_exactly_on_cold_starts() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            latency: "5ms".parse().unwrap(),
            cold_start: "30ms".parse().unwrap(),
            memory_size_mb: 256,
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let tail = [("x-amz-log-type", "Tail")];
    let started = Instant::now();
    let cold = invoke(&sim, "f", &json!({}), &tail).await;
    assert!(started.elapsed() >= ms(35));
    let id = header(&cold, "x-amzn-requestid").unwrap();
    // `Duration` is what the invocation measured: at least the 5 ms drawn, more on a loaded
    // machine; `Billed Duration` is Duration + Init Duration rounded up to the millisecond, as
    // Lambda bills a cold start since August 2025.
    let cold_tail = log_tail(&cold);
    let field = |name: &str| -> f64 {
        cold_tail
            .split(&format!("\t{name}: "))
            .nth(1)
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {cold_tail}"))
    };
    let duration = field("Duration");
    assert!(duration >= 5.0, "{cold_tail}");
    let billed = field("Billed Duration");
    // `Duration` is printed rounded to 0.01 ms; the bill is from the exact value.
    assert!(
        billed.fract() == 0.0 && billed >= duration + 30.0 - 0.005 && billed < duration + 31.005,
        "{cold_tail}"
    );
    assert_eq!(
        cold_tail,
        format!(
            "START RequestId: {id} Version: $LATEST\nEND RequestId: {id}\nREPORT RequestId: {id}\t\
             Duration: {duration:.2} ms\tBilled Duration: {billed} ms\tMemory Size: 256 MB\t\
             Max Memory Used: 64 MB\tInit Duration: 30.00 ms\t\n"
        )
    );
    for _ in 0..3 {
        let warm = invoke(&sim, "f", &json!({}), &tail).await;
        assert!(
            log_tail(&warm).ends_with("Max Memory Used: 64 MB\t\n"),
            "{}",
            log_tail(&warm)
        );
    }
    // Event invocations get no log tail even when asked.
    let event = invoke(
        &sim,
        "f",
        &json!({}),
        &[tail[0], ("x-amz-invocation-type", "Event")],
    )
    .await;
    assert_eq!(header(&event, "x-amz-log-result"), None);
    assert_eq!(sim.stats().functions["f"].cold_starts, 1);

    // A reset drops idle environments: the next invocation is cold again. The `Event` one may
    // still be running; it would come back idle after the reset.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.stats().functions["f"].concurrency > 0 {
        assert!(
            Instant::now() < deadline,
            "the Event invocation never ended"
        );
        tokio::time::sleep(ms(5)).await;
    }
    sim.reset();
    assert!(
        log_tail(&invoke(&sim, "f", &json!({}), &tail).await).contains("Init Duration: 30.00 ms")
    );
}

#[tokio::test]
async fn same_seed_gives_the_same_latencies() {
    async fn durations(seed: u64) -> Vec<f64> {
        let sim = start(SimConfig {
            seed: Some(seed),
            record: true,
            default: FunctionConfig {
                latency: "uniform:1ms..5ms".parse().unwrap(),
                ..FunctionConfig::default()
            },
            ..SimConfig::default()
        })
        .await;
        for _ in 0..5 {
            invoke(&sim, "f", &json!({}), &[]).await;
        }
        // The latencies drawn: what was measured also holds what a loaded machine added.
        let durations: Vec<f64> = sim.invocations().iter().map(|i| i.planned_ms).collect();
        durations
    }
    assert_eq!(durations(42).await, durations(42).await);
    assert_ne!(durations(42).await, durations(43).await);
}

#[tokio::test]
async fn sqs_partial_batch_failures() {
    let sim = start(recording(FunctionConfig {
        rules: vec![fail_if_contains("poison")],
        ..FunctionConfig::default()
    }))
    .await;
    let response = invoke(&sim, "f", &sqs(&["ok", "poison", "ok", "more poison"]), &[]).await;
    assert_eq!(header(&response, "x-amz-function-error"), None);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "msg-1"}, {"itemIdentifier": "msg-3"}]})
    );
    let all_ok = invoke(&sim, "f", &sqs(&["ok"]), &[]).await;
    assert_eq!(
        all_ok.json::<Value>().await.unwrap(),
        json!({"batchItemFailures": []})
    );

    let log = sim.invocations();
    assert_eq!(
        log[0].result,
        InvocationResult::Partial {
            failed: vec!["msg-1".into(), "msg-3".into()]
        }
    );
    assert_eq!(log[0].records_ok, ["msg-0", "msg-2"]);
    assert_eq!(log[0].payload, sqs(&["ok", "poison", "ok", "more poison"]));
    assert_eq!(
        (log[1].seq, &log[1].result),
        (2, &InvocationResult::Success)
    );
    let stats = &sim.stats().functions["f"];
    assert_eq!(
        (stats.records_ok, stats.records_failed, stats.errors),
        (3, 2, 0)
    );
}

#[tokio::test]
async fn kinesis_partial_failures_match_decoded_data_by_regex() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            rules: vec![Rule {
                body_matches: Some(r#""amount":\s*-\d+"#.into()),
                ..Rule::default()
            }],
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let event = json!({"Records": [
        {"kinesis": {"sequenceNumber": "4959001", "data": encode(r#"{"amount": 5}"#)}, "eventSource": "aws:kinesis"},
        {"kinesis": {"sequenceNumber": "4959002", "data": encode(r#"{"amount": -3}"#)}, "eventSource": "aws:kinesis"},
    ]});
    let response = invoke(&sim, "f", &event, &[]).await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "4959002"}]})
    );
}

#[tokio::test]
async fn dynamodb_partial_failures_match_the_new_image() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            rules: vec![fail_if_contains(r#"{"S":"bad"}"#)],
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let event = json!({"Records": [
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "100", "NewImage": {"v": {"S": "good"}}}},
        {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "200", "NewImage": {"v": {"S": "bad"}}}},
    ]});
    let response = invoke(&sim, "f", &event, &[]).await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "200"}]})
    );
}

#[tokio::test]
async fn error_failure_mode_fails_the_whole_invocation() {
    let sim = start(recording(FunctionConfig {
        failure_mode: FailureMode::Error,
        rules: vec![fail_if_contains("poison")],
        ..FunctionConfig::default()
    }))
    .await;
    let response = invoke(&sim, "f", &sqs(&["ok", "poison"]), &[]).await;
    assert_eq!(header(&response, "x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"errorType": "SimulatedError", "errorMessage": "failed records: msg-1"})
    );
    assert!(sim.invocations()[0].records_ok.is_empty());
    let stats = &sim.stats().functions["f"];
    assert_eq!(
        (stats.records_ok, stats.records_failed, stats.errors),
        (0, 2, 1)
    );
}

#[tokio::test]
async fn respond_rule_returns_literal_invalid_responses() {
    let garbage = r#"{"batchItemFailures":[{"foo":"notvalid"}]}"#;
    let sim = start(recording(FunctionConfig {
        rules: vec![
            Rule {
                body_contains: Some("garbage".into()),
                action: RuleAction::Respond,
                response: Some(garbage.into()),
                ..Rule::default()
            },
            Rule {
                body_contains: Some("not-json".into()),
                action: RuleAction::Respond,
                response: Some("this is not json".into()),
                ..Rule::default()
            },
        ],
        ..FunctionConfig::default()
    }))
    .await;
    let response = invoke(&sim, "f", &sqs(&["ok", "garbage"]), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-amz-function-error"), None);
    assert_eq!(response.text().await.unwrap(), garbage);
    let not_json = invoke(&sim, "f", &sqs(&["not-json"]), &[]).await;
    assert_eq!(not_json.text().await.unwrap(), "this is not json");
    assert_eq!(sim.invocations()[0].result, InvocationResult::Responded);
}

#[tokio::test]
async fn times_makes_a_record_fail_then_succeed() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            rules: vec![Rule {
                times: Some(2),
                ..fail_if_contains("flaky")
            }],
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let mut failures = Vec::new();
    for _ in 0..3 {
        let body: Value = invoke(&sim, "f", &sqs(&["flaky"]), &[])
            .await
            .json()
            .await
            .unwrap();
        failures.push(body["batchItemFailures"].as_array().unwrap().len());
    }
    assert_eq!(failures, [1, 1, 0]);
}

#[tokio::test]
async fn tumbling_window_state_counts_records() {
    let sim = start(SimConfig {
        default: FunctionConfig {
            rules: vec![fail_if_contains("poison")],
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let window = |count: Option<u64>, bodies: &[&str]| {
        let mut event = sqs(bodies);
        event["window"] = json!({"start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z"});
        event["state"] = count.map_or(json!({}), |c| json!({"count": c}));
        event["isFinalInvokeForWindow"] = json!(false);
        event
    };
    let first: Value = invoke(&sim, "f", &window(None, &["a", "b"]), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        first,
        json!({"state": {"count": 2}, "batchItemFailures": []})
    );
    let second: Value = invoke(&sim, "f", &window(Some(2), &["c", "poison"]), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        second,
        json!({"state": {"count": 4}, "batchItemFailures": [{"itemIdentifier": "msg-1"}]})
    );
}

#[tokio::test]
async fn plain_http_endpoint_serves_the_same_function() {
    let sim = start(recording(FunctionConfig {
        rules: vec![fail_if_contains("poison")],
        ..FunctionConfig::default()
    }))
    .await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/http/f", sim.url()))
        .json(&sqs(&["poison"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "msg-0"}]})
    );
    let not_json = client
        .post(format!("{}/http/f", sim.url()))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sim.invocations()[0].endpoint, Endpoint::Http);
}

#[tokio::test]
async fn requests_arriving_in_a_stall_wait_until_it_ends() {
    // Each 200 ms period ends with a 100 ms stall.
    let sim = start(recording(FunctionConfig {
        stall: Some("100ms/200ms".parse().unwrap()),
        ..FunctionConfig::default()
    }))
    .await;
    let mut client_latency = Vec::new();
    let deadline = Instant::now() + ms(450);
    while Instant::now() < deadline {
        let started = Instant::now();
        invoke(&sim, "f", &json!({}), &[]).await;
        client_latency.push(started.elapsed());
        tokio::time::sleep(ms(15)).await;
    }
    let log: Vec<Invocation> = sim.invocations();
    let mut stalled = 0;
    for (invocation, latency) in log.iter().zip(&client_latency) {
        let phase = invocation.received_at_ms % 200.0;
        // Durations are measured, so a loaded machine can only lengthen them.
        if phase < 100.0 {
            // Outside the window: no wait, so far less than a stall.
            assert!(invocation.duration_ms < 100.0, "{invocation:?}");
        } else {
            stalled += 1;
            // Waits until the end of the stall window, never less...
            assert!(
                invocation.duration_ms >= 200.0 - phase - 0.01,
                "{invocation:?}"
            );
            // ...and the client really waited that long.
            assert!(
                latency.as_secs_f64() * 1e3 >= invocation.duration_ms - 1.0,
                "{latency:?} {invocation:?}"
            );
        }
    }
    assert!(stalled >= 1, "no request hit a stall window: {log:?}");
    assert!(log.len() > stalled, "every request hit a stall window");
}

#[tokio::test]
async fn sim_endpoints_expose_stats_invocations_and_reset() {
    let sim = start(recording(FunctionConfig::default())).await;
    invoke(&sim, "a", &sqs(&["x", "y"]), &[]).await;
    invoke(&sim, "b", &json!({}), &[]).await;
    let client = reqwest::Client::new();
    let stats: Stats = client
        .get(format!("{}/_sim/stats", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, sim.stats());
    assert_eq!(
        (
            stats.functions["a"].invocations,
            stats.functions["a"].records_ok
        ),
        (1, 2)
    );
    assert_eq!(stats.functions["b"].records_ok, 0);
    // Compared as text: parsing floats back may differ in the last bit.
    let log = client
        .get(format!("{}/_sim/invocations", sim.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(log, serde_json::to_string(&sim.invocations()).unwrap());
    assert_eq!(
        serde_json::from_str::<Vec<Invocation>>(&log).unwrap().len(),
        2
    );

    let reset = client
        .post(format!("{}/_sim/reset", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert!(sim.invocations().is_empty());
    assert_eq!(sim.stats().functions["a"].invocations, 0);
}

#[tokio::test]
async fn recording_is_off_by_default_but_counters_are_not() {
    let sim = start(SimConfig::default()).await;
    invoke(&sim, "f", &json!({}), &[]).await;
    assert!(sim.invocations().is_empty());
    assert_eq!(sim.stats().functions["f"].invocations, 1);
}

#[tokio::test]
async fn invalid_configs_are_refused_at_start_naming_the_field() {
    let mut config = SimConfig::default();
    config.functions.insert(
        "orders".into(),
        FunctionConfig {
            rules: vec![Rule {
                body_matches: Some("[".into()),
                ..Rule::default()
            }],
            ..FunctionConfig::default()
        },
    );
    let error = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "invalid configuration: functions.orders.rules[0].body_matches: invalid regex"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn binary_prints_its_address_and_exits_cleanly_on_sigterm() {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "simulate",
            "--bind",
            "127.0.0.1:0",
            "--reserved-concurrency",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let url = line.strip_prefix("listening on ").unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let response = reqwest::Client::new()
        .post(format!("{url}/http/f"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn example_config_loads_and_behaves_as_documented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/simulator-example.toml");
    let mut config = SimConfig::load(&path).unwrap();
    // Keep the test fast: the example's latencies and cold starts are realistic, not ms-scale.
    for function in config.all_functions_mut() {
        function.latency = "0ms".parse().unwrap();
        function.cold_start = "0ms".parse().unwrap();
    }
    let sim = start(config).await;
    let orders: Value = invoke(&sim, "orders", &sqs(&["fine", "poison"]), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        orders,
        json!({"batchItemFailures": [{"itemIdentifier": "msg-1"}]})
    );
    let payments = invoke(&sim, "payments", &sqs(&[r#"{"amount": -5}"#]), &[]).await;
    assert_eq!(header(&payments, "x-amz-function-error"), Some("Unhandled"));
    let broken = invoke(&sim, "broken", &sqs(&["x"]), &[]).await;
    assert_eq!(
        broken.text().await.unwrap(),
        r#"{"batchItemFailures":[{"foo":"notvalid"}]}"#
    );
    assert_eq!(
        invoke(&sim, "undeclared", &json!({}), &[]).await.status(),
        StatusCode::NOT_FOUND
    );
}
