//! The mailer's gRPC health endpoint: SERVING while it holds a broker
//! connection, NOT_SERVING otherwise, for `""` and `identity.mailer`.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;

pub const MAILER_SERVICE_NAME: &str = "identity.mailer";

/// Binds the health endpoint; serving starts with [`serve`].
///
/// # Errors
/// The address is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (IDENTITY_MAILER_HEALTH_ADDR)"))
}

/// Serves health until `stop`, following `connected`.
///
/// # Errors
/// The transport failed.
pub async fn serve(
    listener: TcpListener,
    mut connected: watch::Receiver<bool>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, service) = tonic_health::server::health_reporter();
    let set = move |is_up: bool| {
        let reporter = reporter.clone();
        async move {
            let status = if is_up { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(MAILER_SERVICE_NAME, status).await;
        }
    };
    let initially_up = *connected.borrow();
    set(initially_up).await;
    let watcher_stop = stop.clone();
    let watcher = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = watcher_stop.cancelled() => break,
                changed = connected.changed() => {
                    if changed.is_err() { break; }
                    let is_up = *connected.borrow_and_update();
                    set(is_up).await;
                }
            }
        }
    });
    let result = Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop.cancelled_owned())
        .await
        .context("the mailer health server failed");
    watcher.abort();
    result
}
