//! A TCP proxy on 127.0.0.1 in front of the emulator, for outage tests: point one service's endpoint
//! (`AWS_ENDPOINT_URL_<SERVICE>`) at it, [`Proxy::cut`] it to make the service unreachable, and
//! [`Proxy::restore`] it to bring the service back.
//!
//! While cut, the proxy resets every connection: the open ones (so no pooled connection survives the
//! outage) and every new one as soon as it is accepted, which a client sees as a connection reset,
//! like a crashed or restarting endpoint behind a load balancer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

struct Shared {
    upstream: SocketAddr,
    /// `Some` while up: cancelled (and replaced by `None`) by [`Proxy::cut`], which ends every
    /// connection relayed under it.
    up: Mutex<Option<CancellationToken>>,
    /// When each connection that arrived while the proxy was cut came (and was reset).
    refused: Mutex<Vec<Instant>>,
}

impl Proxy {
    /// A proxy to `upstream` (an `http://host:port` URL, e.g. [`crate::endpoint`]), up.
    pub async fn start(upstream: &str) -> Proxy {
        let authority = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = authority.parse().expect("upstream is http://<ip>:<port>");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let shared = Arc::new(Shared {
            upstream,
            up: Mutex::new(Some(CancellationToken::new())),
            refused: Mutex::new(Vec::new()),
        });
        let stop = CancellationToken::new();
        let addr = listener.local_addr().expect("proxy address");
        tokio::spawn(accept(listener, shared.clone(), stop.clone()));
        Proxy { addr, shared, stop }
    }

    /// The endpoint URL to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The service becomes unreachable: open connections are reset, new ones too.
    pub fn cut(&self) {
        if let Some(up) = self.shared.up.lock().expect("proxy state").take() {
            up.cancel();
        }
    }

    /// The service is reachable again.
    pub fn restore(&self) {
        self.shared.up.lock().expect("proxy state").get_or_insert_with(CancellationToken::new);
    }

    /// Connections reset so far because they arrived while the proxy was cut.
    pub fn refused(&self) -> usize {
        self.shared.refused.lock().expect("proxy state").len()
    }

    /// The longest time between two connections refused while cut, i.e. how long the client waited
    /// between attempts: an outage ending right after an attempt is noticed that much later.
    pub fn longest_gap_between_refusals(&self) -> std::time::Duration {
        let refused = self.shared.refused.lock().expect("proxy state");
        (refused.windows(2))
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
            _ = stop.cancelled() => return,
        };
        // Dropped with SO_LINGER 0: the peer gets a reset, not an orderly close.
        client.set_zero_linger().ok();
        let up = shared.up.lock().expect("proxy state").clone();
        match up {
            Some(up) => {
                tokio::spawn(relay(client, shared.upstream, up));
            }
            None => {
                shared.refused.lock().expect("proxy state").push(Instant::now());
                drop(client);
            }
        }
    }
}

/// Copies bytes both ways until either side closes or the proxy is cut.
async fn relay(mut client: TcpStream, upstream: SocketAddr, up: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    server.set_zero_linger().ok();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.cancelled() => {}
    }
}
