//! One connection pool; a request sent and its answer read up to a limit; when it met the wire.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderMap, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_service::Service;

use crate::{Error, error_chain};

/// A keep-alive pool of HTTP/1.1 connections to `http://` and `https://` endpoints.
///
/// Smaller than hyper-util's pooling client, and cheaper per request, which is what it is for:
/// a connection is taken from the idle list, sent one request, and put back once its answer has
/// been read whole; no task is spawned and no `Host` header formatted per request (a caller that
/// sends many requests to one endpoint sets `Host` once, see [`host`]). A connection whose answer
/// was not read whole (cut at the limit, an error, a timeout) is dropped, not reused. A request
/// that a reused connection could not send (the server had closed it) is sent again on another:
/// it never reached the server.
#[derive(Clone, Debug)]
pub struct Pool(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    http: HttpConnector,
    /// Made at the first `https://` connection: a system without root certificates (a scratch
    /// container) can still send to `http://` endpoints, and only `https://` ones fail, saying why.
    https: OnceLock<Result<HttpsConnector<HttpConnector>, String>>,
    idle: Mutex<Vec<Idle>>,
    /// Whether `http://` connections read the kernel's receive time stamps ([`arrival_timing_pool`]).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    arrival_times: bool,
}

/// A connection waiting for its next request.
#[derive(Debug)]
struct Idle {
    scheme: Scheme,
    authority: Authority,
    sender: SendRequest<Full<Bytes>>,
    /// When its last request was written and its last bytes read.
    stamps: Arc<Stamps>,
}

/// A new [`Pool`]. `https://` connections use rustls with the system's root certificates, loaded
/// at the first one.
pub fn pool() -> Pool {
    new_pool(false)
}

/// A [`pool`] whose `http://` connections (on Linux) read each answer with the kernel's receive
/// time stamp of its segments, so that [`Exchange::received`] is when the answer arrived rather
/// than when a busy task got to read it: for a load generator, whose own delay is not the
/// service's. It costs about 0.7 µs of CPU per read (`recvmsg` and a copy), 7–8 % of the cheapest
/// HTTP request, so a client that does not time its calls uses [`pool`].
pub fn arrival_timing_pool() -> Pool {
    new_pool(true)
}

fn new_pool(arrival_times: bool) -> Pool {
    Pool(Arc::new(Shared {
        http: HttpConnector::new(),
        https: OnceLock::new(),
        idle: Mutex::new(Vec::new()),
        arrival_times,
    }))
}

/// The `https://` connector: rustls (ring) with the system's root certificates (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, else the platform's store).
fn https() -> Result<HttpsConnector<HttpConnector>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("{e}; https:// endpoints need root certificates (install ca-certificates or set SSL_CERT_FILE)"))?
        .https_only()
        .enable_http1()
        .build();
    Ok(connector)
}

/// The `Host` header for requests to `uri`: its host, and its port unless it is the scheme's
/// default (what hyper-util's client and aws-sigv4 both use).
pub fn host(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match uri.port_u16().filter(|&p| p != default) {
        Some(port) => HeaderValue::try_from(format!("{host}:{port}")),
        None => HeaderValue::try_from(host),
    };
    value.ok()
}

/// Turns `request`'s absolute URI into the origin form HTTP/1.1 sends to a server (path and query
/// only), setting `Host` from it unless given; returns where the request goes. Done before the
/// request's first wait, so that its future does not carry the URI across it.
fn origin_form(request: &mut Request<Full<Bytes>>) -> Result<(Scheme, Authority), Error> {
    let uri = request.uri();
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        return Err(Error::Transport(format!("`{uri}` is not an absolute http:// or https:// URI")));
    };
    if !request.headers().contains_key(HOST) {
        let host = host(uri).ok_or_else(|| Error::Transport(format!("`{uri}` has no valid host")))?;
        request.headers_mut().insert(HOST, host);
    }
    let mut origin = http::uri::Parts::default();
    origin.path_and_query = request.uri().path_and_query().cloned();
    *request.uri_mut() = Uri::from_parts(origin).map_err(|e| Error::Transport(e.to_string()))?;
    Ok((scheme, authority))
}

impl Pool {
    /// Sends `request` (absolute URI) on an idle connection to its endpoint, or a new one; the
    /// connection comes back with the answer, to be returned with [`Pool::put_back`].
    async fn request(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Idle), Error> {
        let (scheme, authority) = origin_form(&mut request)?;
        loop {
            let (mut connection, reused) = match self.take(&scheme, &authority).await {
                Some(idle) => (idle, true),
                // Boxed: connecting (TCP, TLS, the HTTP/1.1 handshake) is a state machine of
                // kilobytes that every request's future would otherwise carry, allocate and move,
                // although only a connection's first request runs it.
                None => (Box::pin(self.connect(scheme.clone(), authority.clone())).await?, false),
            };
            if reused {
                connection.stamps.arm();
            }
            match connection.sender.try_send_request(request).await {
                Ok(response) => return Ok((response, connection)),
                Err(mut e) => match e.take_message() {
                    // Not sent: the server had closed this connection; try another.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Error::Transport(error_chain(&e.into_error()))),
                },
            }
        }
    }

    /// An idle connection to `scheme://authority` that can take a request, if any.
    async fn take(&self, scheme: &Scheme, authority: &Authority) -> Option<Idle> {
        loop {
            let mut idle = {
                let mut list = self.0.idle.lock().unwrap_or_else(|e| e.into_inner());
                let at = list
                    .iter()
                    .rposition(|i| i.authority == *authority && i.scheme == *scheme)?;
                list.swap_remove(at)
            };
            // Ready at once unless its last answer is still being wound up; closed if the server
            // hung up while it was idle.
            if idle.sender.ready().await.is_ok() {
                return Some(idle);
            }
        }
    }

    async fn connect(&self, scheme: Scheme, authority: Authority) -> Result<Idle, Error> {
        // Taken first: the request that opens the connection waits for it, so it counts from here.
        let stamps = Arc::new(Stamps::new());
        let uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| Error::Transport(e.to_string()))?;
        let sender = if scheme == Scheme::HTTPS {
            let connector = self.0.https.get_or_init(https).as_ref().map_err(|e| Error::Tls(e.clone()))?;
            let io = connector.clone().call(uri).await;
            handshake(TokioIo::new(io.map_err(|e| Error::Transport(error_chain(&*e)))?), &stamps).await?
        } else {
            let io = self.0.http.clone().call(uri).await;
            let tcp = io.map_err(|e| Error::Transport(error_chain(&e)))?.into_inner();
            #[cfg(target_os = "linux")]
            let tcp = crate::rx_stamp::RxStamped::new(tcp, self.0.arrival_times);
            handshake(tcp, &stamps).await?
        };
        Ok(Idle {
            scheme,
            authority,
            sender,
            stamps,
        })
    }

    fn put_back(&self, connection: Idle) {
        if !connection.sender.is_closed() {
            self.0.idle.lock().unwrap_or_else(|e| e.into_inner()).push(connection);
        }
    }
}

/// An HTTP/1.1 connection over `io`, its reads and writes time-stamped into `stamps`, its task
/// spawned.
async fn handshake<I>(io: I, stamps: &Arc<Stamps>) -> Result<SendRequest<Full<Bytes>>, Error>
where
    I: AsyncRead + AsyncWrite + ArrivalTime + Unpin + Send + 'static,
{
    let io = TokioIo::new(Stamped {
        io,
        stamps: Arc::clone(stamps),
    });
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Error::Transport(error_chain(&e)))?;
    // Ends when the connection closes: its sender dropped, or the server hung up.
    tokio::spawn(connection);
    Ok(sender)
}

/// An answer, with at most the limit's bytes of its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// What was read of the body: all of it, or nothing when it was longer than the limit.
    pub body: Bytes,
    /// How long the body was: its length, or more than the limit when it was cut (the announced
    /// `Content-Length` if any, else one past the limit).
    pub total: usize,
}

impl Answer {
    /// True when the body was longer than the limit and was not read.
    pub fn cut(&self, limit: usize) -> bool {
        self.total > limit
    }
}

/// Sends `request` through `pool` and reads at most `limit` bytes of the answer's body; a body
/// announced or found longer is not read further (the connection is then dropped, not reused).
pub async fn send(pool: &Pool, request: Request<Full<Bytes>>, limit: usize) -> Result<Answer, Error> {
    let (response, connection) = pool.request(request).await?;
    let (parts, body) = response.into_parts();
    let announced = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let (body, total) = match announced {
        Some(length) if length > limit => (Bytes::new(), length),
        _ => match Limited::new(body, limit).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let total = bytes.len();
                (bytes, total)
            }
            Err(e) if e.is::<http_body_util::LengthLimitError>() => (Bytes::new(), limit + 1),
            Err(e) => return Err(Error::Transport(error_chain(&*e))),
        },
    };
    if let Some(exchange) = connection.stamps.exchange() {
        // Outside `timed` there is nobody to tell.
        LAST_EXCHANGE.try_with(|last| last.set(Some(exchange))).ok();
    }
    // Read whole: the connection can take another request (after its stamps were read).
    if total <= limit {
        pool.put_back(connection);
    }
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        total,
    })
}

/// When a request and its answer met the wire, as seen from the socket: what a load generator
/// times, without the task hand-offs on either side of the socket (hyper's connection task writes
/// the request and reads the answer, then wakes the task that sent it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// Just before the request's first byte was written to the socket; for the request that
    /// opened its connection, when the connect began (it waited for it).
    pub sent: Instant,
    /// When the answer's last byte (as far as it was read) arrived: from an
    /// [`arrival_timing_pool`]'s `http://` connections on Linux, the kernel's receive time stamp
    /// of the segment that carried it; otherwise just after it was read from the socket.
    pub received: Instant,
}

tokio::task_local! {
    static LAST_EXCHANGE: Cell<Option<Exchange>>;
}

/// Runs `future` and returns its output with the [`Exchange`] of the last answer it read through
/// a [`Pool`] (`None` if it read none: no connection, a timeout, a transport error). A side
/// channel rather than a field of every answer type, so that the clients built on [`send`] need
/// not carry it.
pub async fn timed<F: Future>(future: F) -> (F::Output, Option<Exchange>) {
    LAST_EXCHANGE
        .scope(Cell::new(None), async move {
            let output = future.await;
            (output, LAST_EXCHANGE.with(Cell::get))
        })
        .await
}

/// A connection's time stamps, nanoseconds after it began to connect plus one (0: none yet).
/// Written by the connection's I/O in hyper's connection task, read by the request's task once
/// the answer has been handed over.
#[derive(Debug)]
struct Stamps {
    connect: Instant,
    written: AtomicU64,
    read: AtomicU64,
}

impl Stamps {
    /// A new connection's: its first request counts from the connect (`written` already set).
    fn new() -> Self {
        Stamps {
            connect: Instant::now(),
            written: AtomicU64::new(1),
            read: AtomicU64::new(0),
        }
    }

    fn encode(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.connect).as_nanos()).map_or(u64::MAX, |n| n.saturating_add(1))
    }

    fn decode(&self, stamp: u64) -> Option<Instant> {
        stamp.checked_sub(1).map(|n| self.connect + Duration::from_nanos(n))
    }

    /// A request is about to be sent on this (reused) connection: its first write is its start.
    fn arm(&self) {
        self.written.store(0, Ordering::Release);
    }

    /// The last request's exchange, once its answer has been read.
    fn exchange(&self) -> Option<Exchange> {
        let sent = self.decode(self.written.load(Ordering::Acquire))?;
        let received = self.decode(self.read.load(Ordering::Acquire))?;
        (received >= sent).then_some(Exchange { sent, received })
    }
}

/// I/O that may know when the bytes of its last read arrived.
pub(crate) trait ArrivalTime {
    /// When the bytes the last read returned arrived, if known: taken, so it is given once.
    fn take_arrival(&mut self) -> Option<Instant> {
        None
    }
}

/// `https://`: the arrival of TLS records is not the answer's.
impl<T> ArrivalTime for TokioIo<T> {}

/// `http://` where the kernel's receive time stamps are not read.
#[cfg(not(target_os = "linux"))]
impl ArrivalTime for tokio::net::TcpStream {}

/// A connection's I/O that stamps its [`Stamps`]: the first write after [`Stamps::arm`] and every
/// read that got bytes (with the bytes' arrival time when the I/O knows it).
struct Stamped<T> {
    io: T,
    stamps: Arc<Stamps>,
}

impl<T> Stamped<T> {
    /// The clock, if this write may be the request's first.
    fn before_write(&self) -> Option<Instant> {
        (self.stamps.written.load(Ordering::Acquire) == 0).then(Instant::now)
    }

    fn after_write(&self, before: Option<Instant>, poll: &Poll<io::Result<usize>>) {
        if let (Some(at), Poll::Ready(Ok(1..))) = (before, poll) {
            self.stamps.written.store(self.stamps.encode(at), Ordering::Release);
        }
    }
}

impl<T: AsyncRead + ArrivalTime + Unpin> AsyncRead for Stamped<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let arrived = self.io.take_arrival().unwrap_or_else(Instant::now);
            let at = self.stamps.encode(arrived);
            self.stamps.read.store(at, Ordering::Release);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let before = self.before_write();
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.after_write(before, &poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let before = self.before_write();
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.after_write(before, &poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on 127.0.0.1 answering every connection's first request with `response`.
    async fn server(response: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, response));
            }
        });
        url
    }

    async fn answer(mut socket: tokio::net::TcpStream, response: &[u8]) -> std::io::Result<()> {
        // The request's head is enough; its short body is ignored.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        socket.write_all(response).await?;
        socket.shutdown().await
    }

    fn request(url: &str) -> Request<Full<Bytes>> {
        Request::post(url).body(Full::new(Bytes::from_static(b"{}"))).unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let url = server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let answer = send(&pool(), request(&url), 5).await.unwrap();
        assert_eq!((answer.status, answer.body.as_ref(), answer.total), (200, &b"hello"[..], 5));
        assert!(!answer.cut(5));
    }

    #[tokio::test]
    async fn a_body_announced_over_the_limit_is_not_read() {
        let url = server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nhello").await;
        let answer = send(&pool(), request(&url), 10).await.unwrap();
        assert_eq!((answer.body.len(), answer.total), (0, 1_000_000));
        assert!(answer.cut(10));
    }

    #[tokio::test]
    async fn a_body_found_over_the_limit_is_cut() {
        let url = server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n").await;
        let answer = send(&pool(), request(&url), 5).await.unwrap();
        assert_eq!((answer.body.len(), answer.total), (0, 6));
    }

    /// A server on 127.0.0.1 answering up to `per_connection` requests on each connection with
    /// `hello`, then closing it; it counts the connections it accepted.
    async fn keep_alive_server(per_connection: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    for _ in 0..per_connection {
                        // Each request is a head and the two bytes of `{}`.
                        while pending
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .is_none_or(|at| pending.len() < at + 6)
                        {
                            let n = socket.read(&mut buf).await?;
                            if n == 0 {
                                return Ok(());
                            }
                            pending.extend_from_slice(&buf[..n]);
                        }
                        let end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 6;
                        pending.drain(..end);
                        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await?;
                    }
                    socket.shutdown().await
                });
            }
            std::io::Result::Ok(())
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_is_read() {
        let (url, accepted) = keep_alive_server(usize::MAX).await;
        let pool = pool();
        for _ in 0..3 {
            let answer = send(&pool, request(&url), 5).await.unwrap();
            assert_eq!(answer.body.as_ref(), b"hello");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        // One request per connection: each later request finds its idle connection closed.
        let (url, accepted) = keep_alive_server(1).await;
        let pool = pool();
        for _ in 0..3 {
            let answer = send(&pool, request(&url), 5).await.unwrap();
            assert_eq!(answer.body.as_ref(), b"hello");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_whose_answer_was_cut_is_not_reused() {
        let (url, accepted) = keep_alive_server(usize::MAX).await;
        let pool = pool();
        for _ in 0..2 {
            let answer = send(&pool, request(&url), 4).await.unwrap();
            assert!(answer.cut(4));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// On a system without root certificates (here `SSL_CERT_FILE` naming an empty file, in a child
    /// process as the variable is the process's), `http://` endpoints work and an `https://` one is
    /// a TLS error that says what is missing.
    #[test]
    fn without_root_certificates_http_works_and_https_says_why() {
        const NAME: &str = "send::tests::without_root_certificates_http_works_and_https_says_why";
        if std::env::var_os("AWS_WIRE_TEST_NO_ROOTS").is_none() {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--nocapture"])
                .env("AWS_WIRE_TEST_NO_ROOTS", "1")
                .env("SSL_CERT_FILE", "/dev/null")
                .env_remove("SSL_CERT_DIR")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success() && text.contains("1 passed"), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let pool = pool();
            let url = server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
            let answer = send(&pool, request(&url), 5).await.unwrap();
            assert_eq!(answer.body.as_ref(), b"hello");
            let err = send(&pool, request("https://127.0.0.1:9/"), 5).await.unwrap_err();
            assert!(
                matches!(&err, Error::Tls(text) if text.contains("root") && text.contains("SSL_CERT_FILE")),
                "{err}"
            );
        });
    }

    /// Keeps the (current-thread) runtime busy until `until`, as other requests' work would.
    async fn busy_until(until: Instant) {
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn a_request_counts_from_its_write_to_the_socket_not_from_its_caller() {
        let (url, _) = keep_alive_server(usize::MAX).await;
        let pool = pool();
        // The first request opens the connection; the second is sent on it.
        send(&pool, request(&url), 5).await.unwrap();
        // Lets hyper's connection task wind up that exchange and wait for the next request.
        tokio::task::yield_now().await;
        let called = Instant::now();
        // Queued before hyper's connection task is woken to write the request: the write waits
        // for it, as it waits for the other requests' work on a busy generator.
        let hold = Duration::from_millis(50);
        let busy = tokio::spawn(busy_until(called + hold));
        let (answer, exchange) = timed(send(&pool, request(&url), 5)).await;
        busy.await.unwrap();
        assert_eq!(answer.unwrap().body.as_ref(), b"hello");
        let exchange = exchange.expect("an answer was read");
        assert!(exchange.sent >= called + hold, "sent {:?} after the call", exchange.sent - called);
        assert!(exchange.received >= exchange.sent && exchange.received <= Instant::now());
    }

    #[tokio::test]
    async fn an_exchange_on_a_new_connection_brackets_what_the_server_saw() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (seen_tx, seen) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let accepted = Instant::now();
            let mut buf = [0u8; 4096];
            // The request is a few dozen bytes: one segment, one read.
            assert!(socket.read(&mut buf).await.unwrap() > 0);
            let answering = Instant::now();
            seen_tx.send((accepted, answering)).unwrap();
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await
        });
        let (answer, exchange) = timed(send(&pool(), request(&url), 5)).await;
        assert_eq!(answer.unwrap().body.as_ref(), b"hello");
        let exchange = exchange.expect("an answer was read");
        let (accepted, answering) = seen.await.unwrap();
        // The request waited for its connection: it counts from the connect, before the accept.
        assert!(exchange.sent <= accepted, "sent {:?} after the accept", exchange.sent - accepted);
        assert!(exchange.received >= answering);
    }

    /// I/O whose bytes arrived at a known time.
    struct Arrived {
        data: &'static [u8],
        at: Instant,
    }

    impl ArrivalTime for Arrived {
        fn take_arrival(&mut self) -> Option<Instant> {
            Some(self.at)
        }
    }

    impl AsyncRead for Arrived {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            buf.put_slice(self.data);
            self.data = &[];
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_read_is_stamped_with_its_bytes_arrival_when_the_io_knows_it() {
        let stamps = Arc::new(Stamps::new());
        let at = stamps.connect + Duration::from_millis(3);
        let mut io = Stamped { io: Arrived { data: b"hello", at }, stamps: Arc::clone(&stamps) };
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 5);
        assert_eq!(stamps.exchange(), Some(Exchange { sent: stamps.connect, received: at }));
    }

    #[tokio::test]
    async fn no_answer_has_no_exchange() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let (answer, exchange) = timed(send(&pool(), request(&url), 5)).await;
        assert!(answer.is_err());
        assert_eq!(exchange, None);
    }

    #[tokio::test]
    async fn no_server_is_a_transport_error_with_its_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = send(&pool(), request(&url), 5).await.unwrap_err();
        assert!(matches!(&err, Error::Transport(text) if text.contains("onnect")), "{err}");
    }
}
