//! Serving a simulator's router in the background until it is stopped: what every HTTP
//! simulator (the sandbox PSP, the Adyen simulator) does the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long [`Serving::stop`] waits for open connections before dropping them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A bound listener, not serving yet, and the stop signal its background work watches.
pub struct Bound {
    listener: TcpListener,
    local_addr: SocketAddr,
    base_url: String,
    stop: watch::Sender<bool>,
}

/// Binds `listen`; the base URL is `public_base_url` (trailing slash dropped) or
/// `http://{bound address}`, with an unspecified address made `127.0.0.1`.
pub async fn bind(listen: &str, public_base_url: Option<&str>) -> anyhow::Result<Bound> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local_addr = listener.local_addr()?;
    let base_url = match public_base_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let mut reachable = local_addr;
            if reachable.ip().is_unspecified() {
                reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{reachable}")
        }
    };
    let (stop, _) = watch::channel(false);
    Ok(Bound {
        listener,
        local_addr,
        base_url,
        stop,
    })
}

impl Bound {
    /// Where the simulator answers, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The signal background work stops on ([`spawn_until_stopped`]).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Serves `app` in the background; `name` is for the log.
    pub fn serve(self, app: Router, name: &'static str) -> Serving {
        let mut shutdown = self.stop.subscribe();
        let listener = self.listener;
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, simulator = name, "simulator server failed");
            }
        });
        tracing::info!(base_url = %self.base_url, simulator = name, "simulator listening");
        Serving {
            base_url: self.base_url,
            local_addr: self.local_addr,
            stop: self.stop,
            server: Some(server),
        }
    }
}

/// Runs `work` in the background until it ends or the simulator stops, so nothing (a delayed
/// outcome, a webhook retry) outlives [`Serving::stop`].
pub fn spawn_until_stopped(
    stopping: &watch::Receiver<bool>,
    work: impl Future<Output = ()> + Send + 'static,
) {
    let mut stopping = stopping.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
    });
}

/// A running simulator. Dropping it stops it too.
pub struct Serving {
    base_url: String,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Serving {
    /// Where the simulator answers, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and cancels its background work, waiting a grace period for open
    /// connections.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(STOP_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
