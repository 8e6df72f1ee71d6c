//! The listeners: [`Server`] serves a router on a bound socket with timeouts and a graceful
//! stop; [`ops`] is the operations router (metrics, health, readiness). The subscription API's
//! handlers live in [`crate::subscriptions::api`].

pub mod ops;

use axum::Router;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// A bound HTTP server: [`Server::bind`] takes the port (0 picks one), [`Server::run`] serves.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Server {
    /// Binds `addr`.
    ///
    /// # Errors
    /// The bind error, naming the address.
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        Ok(Self { listener, router })
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the socket has no local address (never in practice).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled, then lets open requests finish (for up to 10 s).
    /// A request head must arrive within [`HEADER_TIMEOUT`] and a request be handled within
    /// [`REQUEST_TIMEOUT`], so slow or stalled clients cannot hold connections; an accept error
    /// (too many open files) pauses accepting instead of ending the server.
    ///
    /// # Errors
    /// Never in practice; the signature leaves room for listener errors.
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; pausing");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            // The peer address, for handlers that limit per client.
            let router = self
                .router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let service = hyper_util::service::TowerToHyperService::new(router);
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
        Ok(())
    }
}

/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
