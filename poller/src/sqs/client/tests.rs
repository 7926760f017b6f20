use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_sqs::config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use aws_wire::testing::{
    amz_date, assert_signature_is_sdks, capture_server, credentials, resign, signed_headers, signed_headers_without_user_agent,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::*;

const QUEUE_URL: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo";
const HANDLES: [&str; 2] = ["AQEB+handle/1==", "AQEB handle \"2\""];

/// For each of the three calls, the SDK and the lean client send the same request to the same
/// endpoint: the same body byte for byte, the same protocol headers, the same signed headers but
/// the SDK's user agent. And the signature is the SDK's: over the SDK's exact headers our signer
/// gives the SDK's `Authorization` byte for byte, and our request signs as the SDK's does without
/// its user agent. (The SDK adds `amz-sdk-*` headers after signing and a user agent we do not send.)
#[tokio::test]
async fn the_requests_and_their_signatures_are_the_sdks() {
    let (endpoint, captured) = capture_server(200, &[], r#"{"Successful":[],"Failed":[]}"#).await;
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(credentials())
        .endpoint_url(&endpoint)
        .build();
    let sdk = aws_sdk_sqs::Client::from_conf(config);
    let ours = SqsClient::at(&endpoint, "eu-west-1", SharedCredentialsProvider::new(credentials()), QUEUE_URL.to_owned())
        .unwrap();

    // The poller's calls: a long poll, a receive with its own visibility timeout (dry run), a
    // visibility change, a delete.
    sdk.receive_message()
        .queue_url(QUEUE_URL)
        .max_number_of_messages(7)
        .wait_time_seconds(20)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    ours.receive(7, 20, None).await.unwrap();
    sdk.receive_message()
        .queue_url(QUEUE_URL)
        .max_number_of_messages(10)
        .visibility_timeout(30)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    ours.receive(10, 1, Some(Duration::from_secs(30))).await.unwrap();
    let visibility = HANDLES.iter().enumerate().map(|(i, h)| {
        ChangeMessageVisibilityBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(*h)
            .visibility_timeout(43_200)
            .build()
            .unwrap()
    });
    sdk.change_message_visibility_batch().queue_url(QUEUE_URL).set_entries(Some(visibility.collect())).send().await.unwrap();
    let handles: Vec<String> = HANDLES.iter().map(|h| h.to_string()).collect();
    ours.change_visibility_batch(&handles, 43_200).await.unwrap();
    let delete = HANDLES.iter().enumerate().map(|(i, h)| {
        DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(*h).build().unwrap()
    });
    sdk.delete_message_batch().queue_url(QUEUE_URL).set_entries(Some(delete.collect())).send().await.unwrap();
    ours.delete_batch(&HANDLES).await.unwrap();

    let captured = captured.lock().unwrap();
    assert_eq!(captured.len(), 8);
    for pair in captured.chunks(2) {
        let [sdk, ours_sent] = pair else { unreachable!() };
        let target = sdk.headers["x-amz-target"].to_str().unwrap();
        assert_eq!(ours_sent.uri, sdk.uri, "{target}");
        assert_eq!(ours_sent.body, sdk.body, "{target}");
        for name in ["host", "content-type", "content-length", "x-amz-target", "x-amzn-query-mode", "x-amz-security-token"] {
            assert_eq!(ours_sent.headers.get(name), sdk.headers.get(name), "{target}: {name}");
        }
        assert_eq!(signed_headers(&ours_sent.headers), signed_headers_without_user_agent(&sdk.headers), "{target}");

        let uri = format!("{endpoint}/");
        assert_signature_is_sdks(ours.service.signer(), &uri, sdk, &credentials());
        // The SDK's signing time (it reads the clock itself): both are signed at it below.
        let time = amz_date(&sdk.headers);
        let resigned = |headers: &HeaderMap, body: &[u8], leave_out: &[&str]| {
            resign(ours.service.signer(), &uri, headers, body, leave_out, &credentials(), time)["authorization"].clone()
        };
        assert_eq!(
            resigned(&ours_sent.headers, &ours_sent.body, &[]),
            resigned(&sdk.headers, &sdk.body, &["x-amz-user-agent"]),
            "{target}"
        );
    }
}

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/src/sqs/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A standard queue's message as moto 5.2.5 returns it: escaped body, binary and number attributes.
#[test]
fn a_received_message_is_read_whole() {
    let received = Received::from(Bytes::from(testdata("receive-standard.json")));
    let messages = received.messages().unwrap();
    let [m] = &messages[..] else { panic!("{messages:?}") };
    assert_eq!(m.message_id, "49198e7b-dee6-44c6-a3fb-d81440b6ecd5");
    assert!(m.receipt_handle.as_str().starts_with("rrtrmph"));
    assert_eq!(m.body.as_str(), "{\"a\":\"é\\n\"}");
    assert_eq!(m.md5_of_body, "b5e7b823e65a763c687176ee8d0cd84b");
    assert_eq!(m.md5_of_message_attributes.as_deref(), Some("ad5ccff041817c64baa06072818a49f2"));
    let a = &m.attributes;
    assert_eq!(a.sender_id.as_deref(), Some("AIDAIT2UOQQY3AUEKVGXU"));
    assert_eq!(a.sent_timestamp.as_deref(), Some("1796062455456"));
    assert_eq!(a.approximate_receive_count.as_deref(), Some("1"));
    assert_eq!(a.approximate_first_receive_timestamp.as_deref(), Some("1796062455503"));
    assert_eq!((a.message_group_id.as_ref(), a.sequence_number.as_ref()), (None, None));
    let names: Vec<&str> = m.message_attributes.keys().map(String::as_str).collect();
    assert_eq!(names, ["b", "z"], "ordered by name");
    let (b, z) = (&m.message_attributes["b"], &m.message_attributes["z"]);
    assert_eq!((b.data_type.as_str(), b.binary_value.as_deref(), b.string_value.as_deref()), ("Binary", Some("aGk="), None));
    assert_eq!((z.data_type.as_str(), z.string_value.as_deref(), z.binary_value.as_deref()), ("Number", Some("6"), None));
    // Text without escapes is borrowed from the answer, not copied; the receipt handle is kept
    // as read, to be copied into the event as it is. moto writes `é` as `\u00e9`,
    // which serde_json does not: this body is decoded, to be written as serde_json writes it.
    assert!(matches!(m.message_id, Cow::Borrowed(_)) && matches!(m.receipt_handle, JsonStr::Token(_)));
    assert!(matches!(a.sent_timestamp, Some(Cow::Borrowed(_))));
    assert!(matches!(m.body, JsonStr::Text(Cow::Owned(_))), "{:?}", m.body);
}

#[test]
fn a_fifo_message_has_its_group_and_sequence() {
    let received = Received::from(Bytes::from(testdata("receive-fifo.json")));
    let messages = received.messages().unwrap();
    let a = &messages[0].attributes;
    assert_eq!(a.message_group_id.as_deref(), Some("g1"));
    assert_eq!(a.message_deduplication_id.as_deref(), Some("d1"));
    assert_eq!(a.sequence_number.as_deref(), Some("40266650532857453828"));
    assert!(messages[0].message_attributes.is_empty());
    assert_eq!(messages[0].md5_of_message_attributes, None);
    // A body whose escapes are as serde_json writes them (here none) is kept as read.
    assert!(matches!(messages[0].body, JsonStr::Token(_)), "{:?}", messages[0].body);
    assert_eq!(messages[0].body.as_str(), "fifo body");
}

#[test]
fn an_empty_receive_has_no_messages() {
    let messages = |body: &'static [u8]| Received::from(Bytes::from_static(body)).messages().map(|m| m.len());
    assert_eq!(messages(b"{}"), Ok(0));
    assert_eq!(messages(b""), Ok(0));
    assert!(matches!(messages(b"<xml/>"), Err(CallError::Unreadable(_))));
}

#[test]
fn batch_results_name_the_failed_entries() {
    for file in ["delete-message-batch.json", "change-visibility-batch.json"] {
        let result: BatchResult = parse(&testdata(file)).unwrap();
        assert_eq!(result.successful.len(), 1, "{file}");
        let [failed] = &result.failed[..] else { panic!("{file}: {result:?}") };
        assert_eq!((failed.id.as_str(), failed.sender_fault, failed.code.as_str()), ("1", true, "ReceiptHandleIsInvalid"));
        assert!(failed.message.as_deref().is_some_and(|m| m.contains("receipt handle")), "{file}");
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect()
}

/// moto's answer for a queue that does not exist (as SQS's): the query-compatible code wins.
#[test]
fn error_codes_are_read_as_the_sdk_reads_them() {
    let missing = testdata("error-queue-does-not-exist.json");
    let query = headers(&[
        ("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender"),
        ("x-amzn-errortype", "com.amazonaws.sqs#QueueDoesNotExist"),
    ]);
    let err = service_error(400, &query, &missing);
    assert_eq!(
        err,
        CallError::Service {
            status: 400,
            code: "AWS.SimpleQueueService.NonExistentQueue".to_owned(),
            message: "The specified queue does not exist.".to_owned()
        }
    );
    assert!(err.to_string().contains("AWS.SimpleQueueService.NonExistentQueue"), "{err}");
    assert!(!err.transient());
    // Without the query-compatible header: the type without its namespace.
    let err = service_error(400, &HeaderMap::new(), &missing);
    assert!(matches!(&err, CallError::Service { code, .. } if code == "QueueDoesNotExist"), "{err:?}");
    let denied = service_error(400, &HeaderMap::new(), br#"{"__type":"com.amazonaws.sqs#KmsAccessDenied:http://x","message":"no"}"#);
    assert!(matches!(&denied, CallError::Service { code, .. } if code == "KmsAccessDenied"), "{denied:?}");
    assert!(!denied.transient());
}

#[test]
fn throttles_server_errors_and_no_answer_are_transient() {
    let throttled = service_error(400, &headers(&[("x-amzn-query-error", "AWS.SimpleQueueService.RequestThrottled;Sender")]), b"{}");
    assert!(throttled.transient(), "{throttled:?}");
    assert!(service_error(400, &HeaderMap::new(), br#"{"__type":"ThrottlingException"}"#).transient());
    for status in [500, 502, 503, 504] {
        assert!(service_error(status, &HeaderMap::new(), b"").transient(), "{status}");
    }
    assert!(!service_error(501, &HeaderMap::new(), b"").transient());
    assert!(!service_error(403, &HeaderMap::new(), br#"{"__type":"AccessDenied"}"#).transient());
    assert!(CallError::NoAnswer("connection refused".to_owned()).transient());
}

/// A 503 is tried again, as the SDK does, three attempts in all, then reported.
#[tokio::test]
async fn a_server_error_is_tried_three_times() {
    let (endpoint, captured) = capture_server(503, &[], r#"{"__type":"ServiceUnavailable","message":"later"}"#).await;
    let client = SqsClient::at(&endpoint, "eu-west-1", SharedCredentialsProvider::new(credentials()), QUEUE_URL.to_owned())
        .unwrap();
    let err = client.delete_batch(&HANDLES).await.unwrap_err();
    assert_eq!(
        err,
        CallError::Service { status: 503, code: "ServiceUnavailable".to_owned(), message: "later".to_owned() }
    );
    assert_eq!(captured.lock().unwrap().len(), 3);
}

/// A kept-alive connection the server drops after reading the next request on it (a server
/// restarted, or closing an idle connection as the request goes out): the call got no answer, and
/// is made again on a new connection, as the SDK's retry does. The first answer keeps the
/// connection open, so the second call goes out on it.
#[tokio::test]
async fn a_kept_alive_connection_reset_under_a_call_is_retried_on_a_new_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (count, read) = (Arc::clone(&accepted), Arc::clone(&requests));
    tokio::spawn(async move {
        // Every connection: answer its first request, then read the next one and hang up.
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let read = Arc::clone(&read);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 8192];
                for answered in [true, false] {
                    // One request: its head, then the body its Content-Length announces.
                    let end = loop {
                        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..at]).to_lowercase();
                            let length: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if pending.len() >= at + 4 + length {
                                break at + 4 + length;
                            }
                        }
                        let n = socket.read(&mut buf).await?;
                        if n == 0 {
                            return Ok(());
                        }
                        pending.extend_from_slice(&buf[..n]);
                    };
                    pending.drain(..end);
                    read.fetch_add(1, Ordering::SeqCst);
                    if answered {
                        let body = r#"{"Successful":[{"Id":"0"},{"Id":"1"}]}"#;
                        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        socket.write_all(answer.as_bytes()).await?;
                    }
                }
                socket.shutdown().await
            });
        }
        std::io::Result::Ok(())
    });
    let client = SqsClient::at(&endpoint, "eu-west-1", SharedCredentialsProvider::new(credentials()), QUEUE_URL.to_owned())
        .unwrap();
    for _ in 0..2 {
        let done = client.delete_batch(&HANDLES).await.unwrap();
        assert_eq!((done.successful.len(), done.failed.len()), (2, 0));
    }
    // The first connection took both calls' first attempts; the second call's retry opened another.
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}
