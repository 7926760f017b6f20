//! Hostile functions behind the HTTP target: a small HTTP server in the test misbehaves for its first
//! requests (too slow, a 200 MB body, garbage, 429s with odd `Retry-After` values, closed connections,
//! redirects), then answers normally. Whatever it did, the poller keeps working, no lane fails, and every
//! message is processed (counted by its body, which is unique).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use e2e::{Queue, Sqs, eventually, sqs_mapping, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How the server answers one request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// `200 {}`; the records count as processed.
    Ok,
    /// Wait this long, then answer `Ok` to whoever still listens (the records do not count).
    Slow(Duration),
    /// `200` and an endless body, up to 200 MB.
    Huge,
    /// These bytes as the whole answer, then close.
    Raw(&'static str),
    /// `302 Found` to another path of this server.
    Redirect,
    /// Close the connection without answering.
    Close,
}

/// The function: answers request number `n` (from 0) with `misbehave(n)`, or `Ok` once it returns `None`.
struct Function {
    url: String,
    state: Arc<State>,
}

/// What the server saw and did.
#[derive(Default)]
struct State {
    requests: AtomicU32,
    /// Bodies of the records answered `Ok`.
    processed: Mutex<Vec<String>>,
    /// The path of every request.
    paths: Mutex<Vec<String>>,
    /// Body bytes written by `Huge` answers before the poller hung up.
    huge_bytes_written: AtomicU64,
}

impl Function {
    async fn start(misbehave: fn(u32) -> Option<Answer>) -> Function {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/fn", listener.local_addr().expect("address"));
        let state = Arc::new(State::default());
        let (server_state, server_url) = (state.clone(), url.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, url) = (server_state.clone(), server_url.clone());
                tokio::spawn(async move {
                    let answer = move |n| misbehave(n).unwrap_or(Answer::Ok);
                    serve(stream, answer, &state, &url).await;
                });
            }
        });
        Function { url, state }
    }

    fn processed(&self) -> Vec<String> {
        self.state.processed.lock().unwrap().clone()
    }
}

/// One request on one connection (every answer closes it).
async fn serve(mut stream: TcpStream, answer: impl Fn(u32) -> Answer, state: &State, url: &str) {
    let Some((path, body)) = read_request(&mut stream).await else { return };
    state.paths.lock().unwrap().push(path);
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    match answer(n) {
        Answer::Ok => {
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else { return };
            let bodies = event["Records"].as_array().into_iter().flatten().filter_map(|r| r["body"].as_str());
            state.processed.lock().unwrap().extend(bodies.map(str::to_owned));
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                .await
                .ok();
        }
        Answer::Slow(delay) => {
            tokio::time::sleep(delay).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").await.ok();
        }
        Answer::Huge => {
            if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n").await.is_ok() {
                let chunk = vec![b'x'; 64 * 1024];
                // Until the poller hangs up (it should after 6 MB), at most 200 MB.
                for _ in 0..(200 * 16) {
                    if stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                    state.huge_bytes_written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
        }
        Answer::Raw(bytes) => {
            stream.write_all(bytes.as_bytes()).await.ok();
        }
        Answer::Redirect => {
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: {url}/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(answer.as_bytes()).await.ok();
        }
        Answer::Close => {}
    }
    stream.shutdown().await.ok();
}

/// Reads one request; returns its path and body.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let header_end = loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_ascii_lowercase();
    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Some((path, data[header_end..header_end + length].to_vec()))
}

/// 20 messages through a poller whose HTTP target is `function` (`--invoke-timeout 1s`, a 2 s visibility
/// timeout, `BatchSize` 5, `ReportBatchItemFailures`): every message is processed, the queue drains, no
/// lane fails.
async fn survives(function: &Function) {
    let sqs = Sqs::new().await;
    let queue: Queue = sqs.create_queue(&unique("hostile"), &[(QueueAttributeName::VisibilityTimeout, "2".into())]).await;
    let bodies: Vec<(String, Option<String>)> = (0..20).map(|i| (format!("h-{i:02}"), None)).collect();
    sqs.send(&queue, &bodies).await;
    let mapping = sqs_mapping(&queue, "hostile-fn", r#""BatchSize":5,"FunctionResponseTypes":["ReportBatchItemFailures"]"#);
    let options = poller::Options {
        http_url: Some(function.url.clone()),
        invoke_timeout: Some(Duration::from_secs(1)),
        ..e2e::options(std::env::temp_dir().join(unique("poller-state")))
    };
    let cancel = CancellationToken::new();
    let poller = tokio::spawn(
        poller::Poller::new(vec![poller::config::load(&mapping).expect("valid mapping")], options).run(cancel.clone()),
    );
    let expected: BTreeSet<String> = bodies.into_iter().map(|(b, _)| b).collect();
    eventually(Duration::from_secs(90), "every message processed", || async {
        function.processed().into_iter().collect::<BTreeSet<_>>() == expected
    })
    .await;
    eventually(Duration::from_secs(30), "queue empty", || async { sqs.depth(&queue).await == 0 }).await;
    cancel.cancel();
    let reports = tokio::time::timeout(Duration::from_secs(60), poller)
        .await
        .expect("poller stops")
        .expect("poller task did not panic")
        .expect("poller ran");
    let c = reports[0].counters;
    assert_eq!(c.worker_failures, 0, "no lane failed: {c}");
    assert!(function.state.requests.load(Ordering::SeqCst) > 4, "the function misbehaved first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slower_than_the_invoke_timeout() {
    survives(&Function::start(|n| (n < 3).then_some(Answer::Slow(Duration::from_secs(3)))).await).await;
}

/// The poller stops reading at Lambda's 6 MB response limit: the server cannot push 200 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_megabyte_response() {
    let function = Function::start(|n| (n < 2).then_some(Answer::Huge)).await;
    survives(&function).await;
    let written = function.state.huge_bytes_written.load(Ordering::SeqCst);
    // Two answers of 6 MB each, plus what socket buffers took in before the poller hung up.
    assert!(written < 40 * 1024 * 1024, "{written} bytes written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_answers() {
    const GARBAGE: [&str; 4] = [
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n\0garbage!",
        "HTTP/1.1 200 OK\r\nContent-Length: 30\r\nConnection: close\r\n\r\n{\"batchItemFailures\":[{\"x\":1}]",
        "NOT HTTP AT ALL\r\n\r\n",
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\nConnection: close\r\n\r\ncut short",
    ];
    survives(&Function::start(|n| GARBAGE.get(n as usize).map(|g| Answer::Raw(g))).await).await;
}

/// `Retry-After` of 2^64-1 seconds used to overflow a lane's arithmetic; five of them would stop every
/// lane of the mapping. Other odd values (too large for any integer, negative, not a number, a date) are
/// no trouble either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttles_with_odd_retry_after_values() {
    const HUGE: &str =
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 18446744073709551615\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const THROTTLES: [&str; 10] = [
        HUGE,
        HUGE,
        HUGE,
        HUGE,
        HUGE,
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 99999999999999999999999999\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: -5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1e400\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: soon\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ];
    survives(&Function::start(|n| THROTTLES.get(n as usize).map(|t| Answer::Raw(t))).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_closed_without_an_answer() {
    survives(&Function::start(|n| (n < 4).then_some(Answer::Close)).await).await;
}

/// A redirect is an invoke error: the event is never sent anywhere but the configured URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirects_are_not_followed() {
    let function = Function::start(|n| (n < 3).then_some(Answer::Redirect)).await;
    survives(&function).await;
    let paths = function.state.paths.lock().unwrap().clone();
    assert!(paths.iter().all(|p| p == "/fn"), "{paths:?}");
}
