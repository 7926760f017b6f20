//! Prometheus exposition: the registry of [`Metrics`] as `GET /metrics`, in the format the scraper asks
//! for. What is counted, and under which name, is declared in [`crate::stats`]; names and their
//! CloudWatch counterparts are in docs/metrics.md.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stats::Metrics;

/// Where `poller run` serves metrics unless told otherwise: loopback only, since the endpoint has no
/// authentication (9464 is the port OpenTelemetry's Prometheus exporters use).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

pub use prom_http::Format;

/// Everything in `metrics`, in `format`.
pub fn encode(metrics: &Metrics, format: Format) -> String {
    prom_http::encode(metrics.registry(), format)
}

/// Serve `GET /metrics` on `addr` until `shutdown` fires. Returns the bound address (useful with port
/// 0) and the server task; fails if the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    prom_http::serve(addr, metrics.shared_registry(), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::MappingLabels;

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
