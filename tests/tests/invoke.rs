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

/// `GetFunctionConfiguration` through the SDK: the simulator answers in Lambda's shape, with the
/// configured timeout in whole seconds; a missing function is a 404.
#[tokio::test]
async fn function_configuration_through_the_sdk() {
    let sim = start(&[("slow", FunctionConfig { timeout: Duration::from_millis(44_500), ..FunctionConfig::default() })]).await;
    let Target::Lambda(slow) = lambda(&sim, "slow").await else { unreachable!() };
    let config = slow.configuration().await.unwrap();
    assert_eq!(config.timeout, Duration::from_secs(45), "rounded up to whole seconds");
    assert_eq!(config.function_arn.as_deref(), Some("arn:aws:lambda:us-east-1:123456789012:function:slow"));
    assert_eq!(lambda(&sim, "slow").await.function_timeout().await.unwrap(), Some(Duration::from_secs(45)));
    match lambda(&sim, "missing").await.function_timeout().await {
        Err(Error::Client { status: 404, message, .. }) => assert_eq!(message, "Function not found: missing"),
        other => panic!("expected 404, got {other:?}"),
    }
    let http = HttpTarget::new(format!("{}/http/slow", sim.url()), Some(Duration::from_secs(9))).unwrap();
    assert_eq!(Target::Http(http).function_timeout().await.unwrap(), Some(Duration::from_secs(9)));
}

/// A function answering more than Lambda's 6 MB response limit through the Invoke API gets the error
/// Lambda gives: a function error `Function.ResponseSizeTooLarge`, and the body is not kept.
#[tokio::test]
async fn oversized_lambda_response_is_a_function_error() {
    let big = format!("\"{}\"", "x".repeat(7 * 1024 * 1024));
    let sim = start(&[(
        "big",
        FunctionConfig {
            rules: vec![loadgen::simulate::Rule {
                action: loadgen::simulate::RuleAction::Respond,
                response: Some(big),
                ..Default::default()
            }],
            ..FunctionConfig::default()
        },
    )])
    .await;
    let r = lambda(&sim, "big").await.invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await.unwrap();
    assert_eq!(r.function_error.as_deref(), Some("Unhandled"));
    assert!(r.payload.len() < 1024, "{} bytes kept", r.payload.len());
    let body: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(body["errorType"], "Function.ResponseSizeTooLarge");
}

/// A Lambda endpoint that streams an endless response without `Content-Length`: the SDK stops reading at
/// Lambda's 6 MB response limit and the invoke is the `Function.ResponseSizeTooLarge` function error.
#[tokio::test]
async fn unannounced_oversized_lambda_response_is_cut_at_the_limit() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let server_written = written.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // The request is small: one read takes its head, the rest is not needed.
        let mut buf = vec![0u8; 64 * 1024];
        let read = stream.read(&mut buf).await.expect("the request");
        assert!(read > 0, "the client sent its request");
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n").await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        // Up to 200 MB, until the client hangs up.
        for _ in 0..(200 * 16) {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            server_written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("a", "b", None, None, "test"))
        .load()
        .await;
    let target = Target::Lambda(LambdaTarget::new(&sdk, "endless", Some(&url), Some(Duration::from_secs(60))));
    let r = target.invoke(b"{}".to_vec(), InvocationType::RequestResponse, false).await.unwrap();
    assert_eq!(r.function_error.as_deref(), Some("Unhandled"));
    let body: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(body["errorType"], "Function.ResponseSizeTooLarge");
    let written = written.load(Ordering::SeqCst);
    assert!(written < 40 * 1024 * 1024, "{written} bytes written before the client hung up");
}
