//! The process's HTTP endpoint: the registry of [`Metrics`] as `GET /metrics`, in the format the
//! scraper asks for, and the Kubernetes probes `GET /healthz` (liveness) and `GET /readyz`
//! (readiness, decided by [`crate::health::readiness`]). What is counted, and under which name, is
//! declared in [`crate::stats`]; names and their CloudWatch counterparts are in docs/metrics.md, the
//! probes in docs/operations.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::{Readiness, now_ms, readiness};
use crate::stats::Metrics;

/// Where `poller run` serves metrics unless told otherwise: loopback only, since the endpoint has no
/// authentication (9464 is the port OpenTelemetry's Prometheus exporters use).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

pub use prom_http::Format;

/// Everything in `metrics`, in `format`.
pub fn encode(metrics: &Metrics, format: Format) -> String {
    prom_http::encode(metrics.registry(), format)
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown` fires; a mapping whose polls
/// or invokes have failed for longer than `ready_stale_after` is not ready. Returns the bound address
/// (useful with port 0) and the server task; fails if the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready_stale_after: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    prom_http::serve_router(addr, router(metrics, ready_stale_after), shutdown).await
}

/// The routes of [`serve`].
pub fn router(metrics: Arc<Metrics>, ready_stale_after: Duration) -> axum::Router {
    let probes = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Probes {
            metrics: metrics.clone(),
            ready_stale_after,
        });
    prom_http::router(metrics.shared_registry()).merge(probes)
}

#[derive(Clone)]
struct Probes {
    metrics: Arc<Metrics>,
    ready_stale_after: Duration,
}

/// Liveness: answered by a task of the runtime that runs the mappings, so an answer means the event
/// loop still schedules work. Nothing else is checked: a liveness failure makes Kubernetes restart
/// the process, which cures a wedged runtime but not an unreachable queue.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: 200 when every enabled mapping is ready, else 503; the body names each mapping's state.
async fn readyz(State(probes): State<Probes>) -> (StatusCode, Json<Readiness>) {
    let answer = readiness(probes.metrics.health().snapshot(), now_ms(), probes.ready_stale_after);
    let status = if answer.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(answer))
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
