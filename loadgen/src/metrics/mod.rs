//! Prometheus metrics of both tools, in the format the scraper asks for.
//!
//! `loadgen run` counts into [`RunMetrics`] and serves them on their own address
//! (`--metrics-addr`, [`serve`]). `loadgen simulate` adds `GET /metrics` to the simulator's own
//! routes ([`router`]), read from the simulator's counters at scrape time. Names follow CloudWatch's
//! Lambda metrics; the table and the decisions are in docs/metrics.md (`## loadgen`).

#[cfg(test)]
mod dashboard_test;
mod run;
mod simulator;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use run::RunMetrics;
pub(crate) use simulator::simulator_registry;

use crate::Error;

/// Where `loadgen run` serves metrics unless told otherwise: loopback only, since the endpoint has
/// no authentication. One port above the poller's 9464, so both run side by side.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9465";

pub use prom_http::{Format, encode, router};

/// [`prom_http::serve`], failing with loadgen's error.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    prom_http::serve(addr, registry, shutdown)
        .await
        .map_err(|error| Error::Bind { addr, error })
}
