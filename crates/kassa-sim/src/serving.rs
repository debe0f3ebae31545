//! What the HTTP simulators share: binding, the URL browsers reach them at, serving in the
//! background until told to stop, and stopping within a grace period.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stop waits for open connections before dropping them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Binds `listen`; answers the listener, its address, and the base URL (no trailing slash)
/// browsers reach it at: `public_base_url` when given, else the bound address (loopback for
/// an unspecified one).
pub(crate) async fn bind(
    listen: &str,
    public_base_url: Option<&str>,
) -> anyhow::Result<(TcpListener, SocketAddr, String)> {
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
    Ok((listener, local_addr, base_url))
}

/// Serves `app` on `listener` in the background until `stopping` turns true.
pub(crate) fn serve(
    listener: TcpListener,
    app: Router,
    mut stopping: watch::Receiver<bool>,
    name: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        });
        if let Err(error) = serving.await {
            tracing::error!(%error, simulator = name, "simulator server failed");
        }
    })
}

/// Tells the server to stop and waits for it, dropping it after the grace period.
pub(crate) async fn stop(stop: &watch::Sender<bool>, server: Option<JoinHandle<()>>) {
    let _ = stop.send(true);
    if let Some(server) = server {
        let abort = server.abort_handle();
        if tokio::time::timeout(STOP_GRACE, server).await.is_err() {
            abort.abort();
        }
    }
}
