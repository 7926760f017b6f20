//! Serve a `prometheus-client` registry at `GET /metrics`, in the text format the scraper asks for
//! (OpenMetrics when the `Accept` header names it, else the Prometheus text format 0.0.4). Shared by
//! `poller` and `loadgen`, whose registries say *what* is counted; this crate only says how it is served.
//!
//! The server is hardened for a process that must stop on time: a client gets [`HEADER_READ_TIMEOUT`]
//! to send a request head (and a kept-alive connection is closed after that long without a new
//! request), and on shutdown every connection is closed within [`CLOSE_GRACE`], so a half-open client
//! can neither hold a connection nor delay the process's exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::registry::Registry;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Longest a client may take to send a request head, and longest a kept-alive connection may wait
/// for its next request. A scrape sends its head at once; this only cuts off stuck or idle clients.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// On shutdown, requests being answered get this long to finish before their connection is closed.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A `--metrics-addr` value: where to serve, or `None` for `off`. Parses `HOST:PORT` (port 0 picks a
/// free port) or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<MetricsAddr, String> {
        match text {
            "off" => Ok(MetricsAddr(None)),
            addr => addr
                .parse()
                .map(|a| MetricsAddr(Some(a)))
                .map_err(|e| format!("{addr:?}: {e} (use HOST:PORT or off)")),
        }
    }
}

/// Every metric in `registry`, in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut text = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        }
    }
    .expect("writing to a String cannot fail");
    text
}

/// The two text exposition formats scrapers ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text, what Prometheus prefers.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for everything else (curl, older scrapers).
    Prometheus,
}

impl Format {
    /// OpenMetrics if the `Accept` header names it, else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// `GET /metrics` for `registry`, to serve alone or next to other routes.
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
}

/// Serves `GET /metrics` on `addr` until `shutdown` fires. Returns the bound address (port 0 picks
/// a free one) and the server task; fails if the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let (bound, task) = serve_router(addr, router(registry), shutdown).await?;
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    Ok((bound, task))
}

/// Serves `app` (HTTP/1.1) on `addr` until `shutdown` fires, with the timeouts of this module: the
/// task ends within [`CLOSE_GRACE`] of `shutdown`, whatever its clients do. Returns the bound address
/// and the server task; fails if the address cannot be bound.
pub async fn serve_router(
    addr: SocketAddr,
    app: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(connection(stream, app.clone(), shutdown.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        drop(listener);
        // Each connection ends within CLOSE_GRACE of the shutdown.
        while connections.join_next().await.is_some() {}
    });
    Ok((bound, task))
}

/// One client connection: served until it closes, times out, or shutdown (then closed gracefully
/// within [`CLOSE_GRACE`], or dropped).
async fn connection(stream: TcpStream, app: axum::Router, shutdown: CancellationToken) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            return;
        }
        _ = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    // Not answered in time: dropping the connection closes it.
    tokio::time::timeout(CLOSE_GRACE, conn).await.ok();
}

async fn scrape(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    (
        [(CONTENT_TYPE, format.content_type())],
        encode(&registry, format),
    )
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    /// A client that sent half a request head holds its connection open; shutdown closes it anyway,
    /// within the grace, instead of waiting for the rest of the request.
    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_half_open_client() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stop = CancellationToken::new();
        let registry = Arc::new(Registry::default());
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), registry, stop.clone())
            .await
            .expect("binds");
        let mut half_open = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        half_open
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x")
            .await
            .expect("writes");
        // A whole request on another connection is answered: the server is up and serving.
        let mut whole = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        whole
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("writes");
        let mut response = String::new();
        whole.read_to_string(&mut response).await.expect("reads");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");

        stop.cancel();
        // CLOSE_GRACE, and a generous margin for a loaded machine: not the 10 s header timeout
        // plus anything, and certainly not forever.
        tokio::time::timeout(CLOSE_GRACE + Duration::from_secs(5), task)
            .await
            .expect("the server stops despite the half-open client")
            .expect("server task");
        let mut rest = Vec::new();
        let closed = half_open.read_to_end(&mut rest).await;
        assert!(
            closed.is_err() || !rest.starts_with(b"HTTP/1.1 200"),
            "no answer to half a request"
        );
    }

    #[test]
    fn metrics_addr_is_an_address_or_off() {
        assert_eq!("off".parse(), Ok(MetricsAddr(None)));
        assert_eq!(
            "127.0.0.1:0".parse(),
            Ok(MetricsAddr(Some("127.0.0.1:0".parse().unwrap())))
        );
        assert!(
            "localhost"
                .parse::<MetricsAddr>()
                .unwrap_err()
                .contains("use HOST:PORT or off")
        );
    }

    #[test]
    fn prometheus_asks_for_openmetrics_others_get_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
    }

    #[test]
    fn both_formats_carry_the_same_samples() {
        let mut registry = Registry::with_prefix("loadgen");
        let counter = Counter::<u64>::default();
        registry.register("late_sends", "Late", counter.clone());
        counter.inc_by(3);
        let open = encode(&registry, Format::OpenMetrics);
        let text = encode(&registry, Format::Prometheus);
        for body in [&open, &text] {
            assert!(
                body.lines().any(|l| l == "loadgen_late_sends_total 3"),
                "{body}"
            );
        }
        assert!(
            open.ends_with("# EOF\n") && !text.contains("# EOF"),
            "{open}{text}"
        );
    }
}
