//! lambda-invoke against the function simulator: the real aws-sdk-lambda client parses what the
//! simulator answers the way it parses Lambda's answers, and both targets classify outcomes alike.

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_invoke::{Error, HttpTarget, InvocationType, LambdaTarget, Target};
use loadgen::simulate::{FunctionConfig, SimConfig, SimHandle, Simulator};

async fn start(functions: &[(&str, FunctionConfig)]) -> SimHandle {
    let config = SimConfig {
        functions: functions.iter().map(|(n, f)| (n.to_string(), f.clone())).collect::<BTreeMap<_, _>>(),
        ..SimConfig::default()
    };
    Simulator::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn lambda(sim: &SimHandle, function: &str) -> Target {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("a", "b", None, None, "test"))
        .load()
        .await;
    Target::Lambda(LambdaTarget::new(&sdk, function, Some(&sim.url()), Some(Duration::from_secs(10))))
}

#[tokio::test]
async fn lambda_api_outcomes_through_the_sdk() {
    let sim = start(&[
        ("ok", FunctionConfig::default()),
        ("broken", FunctionConfig { error_rate: 1.0, ..FunctionConfig::default() }),
        ("full", FunctionConfig { reserved_concurrency: Some(0), retry_after_secs: Some(3), ..FunctionConfig::default() }),
    ])
    .await;

    let ok = lambda(&sim, "ok").await;
    let r = ok.invoke(br#"{"a":1}"#.to_vec(), InvocationType::RequestResponse, true).await.unwrap();
    assert_eq!((r.status, r.function_error.as_deref()), (200, None));
    assert_eq!(r.executed_version.as_deref(), Some("$LATEST"));
    let tail = r.log_tail.expect("log tail requested");
    assert!(tail.contains("REPORT RequestId:") && tail.contains("Init Duration:"), "cold start: {tail}");
    let warm = ok.invoke(b"{}".to_vec(), InvocationType::RequestResponse, true).await.unwrap();
    assert!(!warm.log_tail.unwrap().contains("Init Duration"), "second call is warm");
    assert_eq!(ok.invoke(b"{}".to_vec(), InvocationType::Event, false).await.unwrap().status, 202);
    assert_eq!(ok.invoke(b"{}".to_vec(), InvocationType::DryRun, false).await.unwrap().status, 204);

    let r = lambda(&sim, "broken").await.invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await.unwrap();
    assert_eq!((r.status, r.function_error.as_deref()), (200, Some("Unhandled")));
    let body: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert!(body["errorMessage"].is_string(), "{body}");

    match lambda(&sim, "full").await.invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await {
        Err(Error::Throttled { reason, retry_after }) => {
            assert_eq!(reason.as_deref(), Some("ReservedFunctionConcurrentInvocationLimitExceeded"));
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("expected a throttle, got {other:?}"),
    }

    match lambda(&sim, "missing").await.invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await {
        Err(e @ Error::Client { status: 404, .. }) => {
            assert!(e.to_string().contains("ResourceNotFoundException"), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test]
async fn http_target_outcomes() {
    let sim = start(&[
        ("ok", FunctionConfig::default()),
        ("broken", FunctionConfig { error_rate: 1.0, ..FunctionConfig::default() }),
        ("full", FunctionConfig { reserved_concurrency: Some(0), ..FunctionConfig::default() }),
    ])
    .await;
    let http = |name: &str| Target::Http(HttpTarget::new(format!("{}/http/{name}", sim.url()), None).unwrap());
    let r = http("ok").invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await.unwrap();
    assert_eq!((r.status, r.function_error), (200, None));
    let r = http("broken").invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await.unwrap();
    assert_eq!(r.function_error.as_deref(), Some("Unhandled"));
    match http("full").invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await {
        Err(Error::Throttled { reason, .. }) => {
            assert_eq!(reason.as_deref(), Some("ReservedFunctionConcurrentInvocationLimitExceeded"))
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
    let closed = Target::Http(HttpTarget::new("http://127.0.0.1:9/x", Some(Duration::from_secs(2))).unwrap());
    assert!(matches!(
        closed.invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await,
        Err(Error::Transport(_))
    ));
}
