//! Serve a `prometheus-client` registry at `GET /metrics`, in the text format the scraper asks for
//! (OpenMetrics when the `Accept` header names it, else the Prometheus text format 0.0.4). Shared by
//! `poller` and `loadgen`, whose registries say *what* is counted; this crate only says how it is served.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(registry))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    Ok((bound, task))
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

    #[test]
    fn metrics_addr_is_an_address_or_off() {
        assert_eq!("off".parse(), Ok(MetricsAddr(None)));
        assert_eq!("127.0.0.1:0".parse(), Ok(MetricsAddr(Some("127.0.0.1:0".parse().unwrap()))));
        assert!("localhost".parse::<MetricsAddr>().unwrap_err().contains("use HOST:PORT or off"));
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
