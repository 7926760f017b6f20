//! Prometheus exposition: the registry of [`Metrics`] as `GET /metrics`, in the format the scraper asks
//! for. What is counted, and under which name, is declared in [`crate::stats`]; names and their
//! CloudWatch counterparts are in docs/metrics.md.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stats::Metrics;

/// Where `poller run` serves metrics unless told otherwise: loopback only, since the endpoint has no
/// authentication (9464 is the port OpenTelemetry's Prometheus exporters use).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Everything in `metrics`, in `format`.
pub fn encode(metrics: &Metrics, format: Format) -> String {
    let mut text = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, metrics.registry()),
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut text, metrics.registry()),
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

/// Serve `GET /metrics` on `addr` until `shutdown` fires. Returns the bound address (useful with port
/// 0) and the server task; fails if the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route("/metrics", get(scrape)).with_state(metrics);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    tracing::info!(addr = %bound, "serving Prometheus metrics on /metrics");
    Ok((bound, task))
}

async fn scrape(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    ([(CONTENT_TYPE, format.content_type())], encode(&metrics, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::MappingLabels;

    #[test]
    fn prometheus_asks_for_openmetrics_others_get_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
    }

    #[test]
    fn both_formats_carry_the_same_series() {
        let metrics = Metrics::new();
        let counters = metrics.mapping(MappingLabels {
            mapping: "m-1".to_owned(),
            source: "arn:aws:sqs:us-east-1:123456789012:q".to_owned(),
            function: "f".to_owned(),
        });
        crate::stats::Counters::add(&counters.invoked, 4);
        let series = r#"poller_invoked_events_total{mapping="m-1",source="arn:aws:sqs:us-east-1:123456789012:q",function="f"} 4"#;
        let open = encode(&metrics, Format::OpenMetrics);
        let text = encode(&metrics, Format::Prometheus);
        assert!(open.lines().any(|l| l == series) && open.ends_with("# EOF\n"), "{open}");
        assert!(text.lines().any(|l| l == series) && !text.contains("# EOF"), "{text}");
    }
}
