//! `myelin serve`: bind, open storage, serve until SIGTERM or Ctrl-C.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use myelin_core::config::Config;

/// How long in-flight requests (long-polls included) get after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let services = crate::cli::open_services(config).await?;
    myelin_service::jobs::spawn(&services);
    tracing::info!(
        %listen,
        server_name = %services.server_name(),
        database = %services.config().database_url_for_logs(),
        open_registration = services.config().open_registration(),
        "Myelin is serving"
    );
    let app = myelin_api::router(services).into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(result)) => result.context("server error")?,
        Ok(Err(join)) => return Err(join).context("server task failed"),
        Err(_) => tracing::info!("grace period over; closing remaining connections"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
