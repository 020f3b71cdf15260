//! `myelin serve`: bind, open storage, serve until SIGTERM or Ctrl-C.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use myelin_core::config::Config;

/// How long in-flight requests (long-polls included) get after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(config: Config, reloader: crate::cli::Reloader) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let hangups = hangup_signals();
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let federation_listener = match config.federation.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for federation on {addr}"))?,
        ),
        None => None,
    };
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
        None => None,
    };
    let services = crate::cli::open_services(config).await?;
    services.register_appservice_users().await.map_err(anyhow::Error::msg).context("application service users")?;
    let federation_tls = match &federation_listener {
        Some(_) => {
            let (cert, key) =
                myelin_federation::tls::ensure_certificate(services.config()).map_err(anyhow::Error::msg)?;
            // A certificate that does not load stops the start, not only the listener later.
            myelin_federation::tls::server_config(&cert, &key).map_err(anyhow::Error::msg)?;
            Some((cert, key))
        }
        None => None,
    };
    spawn_reloads(hangups, reloader, services.clone());
    myelin_service::jobs::spawn(&services);
    myelin_service::presence::spawn_timers(&services);
    myelin_service::media::retention::spawn_retention(&services);
    tracing::info!(
        %listen,
        federation_listen = ?services.config().federation.listen,
        metrics_listen = ?services.config().metrics.listen,
        server_name = %services.server_name(),
        database = %services.config().database_url_for_logs(),
        open_registration = services.config().open_registration(),
        "Myelin is serving"
    );
    // The federation routes are also on the client listener, for a TLS-terminating proxy.
    let app = myelin_api::router(services.clone())
        .merge(myelin_federation::routes(services.clone()))
        .route_layer(axum::middleware::from_fn_with_state(services.clone(), myelin_api::record_http_metrics))
        .into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn({
        let stop = stopped(stop_rx.clone());
        // No Nagle: a response written in pieces (a streamed file's head, then its bytes) would
        // otherwise wait for the client's delayed ACK, 40 ms on Linux.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        async move { axum::serve(listener, app).with_graceful_shutdown(stop).await }
    });
    let metrics = metrics_listener.map(|listener| {
        let router = myelin_api::metrics_router(services.clone());
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stop).await })
    });
    let federation = match (federation_listener, federation_tls) {
        (Some(listener), Some((cert, key))) => {
            let router = myelin_federation::router(services.clone())
                .route_layer(axum::middleware::from_fn_with_state(services.clone(), myelin_api::record_http_metrics));
            let stop = stopped(stop_rx);
            Some(tokio::spawn(
                async move { myelin_federation::tls::serve_tls(listener, &cert, &key, router, stop).await },
            ))
        }
        _ => None,
    };
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(metrics) = metrics {
        match metrics.await {
            Ok(result) => result.context("metrics listener error")?,
            Err(join) => return Err(join).context("metrics listener task failed"),
        }
    }
    if let Some(federation) = federation {
        match federation.await {
            Ok(result) => result.map_err(anyhow::Error::msg).context("federation listener error")?,
            Err(join) => return Err(join).context("federation listener task failed"),
        }
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(result)) => result.context("server error")?,
        Ok(Err(join)) => return Err(join).context("server task failed"),
        Err(_) => tracing::info!("grace period over; closing remaining connections"),
    }
    Ok(())
}

/// SIGHUP's stream, installed now (a signal sent as soon as the server answers is a reload, not
/// death by the signal's default action).
#[cfg(unix)]
fn hangup_signals() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signals() -> Option<()> {
    None
}

/// On each SIGHUP: the log filter and the application service registration files are read
/// again (a mistake in them is logged and changes nothing).
#[cfg(unix)]
fn spawn_reloads(
    hangups: Option<tokio::signal::unix::Signal>,
    reloader: crate::cli::Reloader,
    services: std::sync::Arc<myelin_service::Services>,
) {
    let Some(mut hangups) = hangups else { return };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match reloader.reload(&services).await {
                Ok(what) => tracing::info!(reloaded = %what, "SIGHUP: configuration reloaded"),
                Err(err) => tracing::error!(error = %format!("{err:#}"), "SIGHUP: reload refused; nothing changed"),
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_reloads(_: Option<()>, _: crate::cli::Reloader, _: std::sync::Arc<myelin_service::Services>) {}

/// A future of the first SIGTERM or Ctrl-C. The handlers are installed when this is called, not
/// when the future is first polled: called before the listeners serve, a signal sent as soon as
/// the server answers is a clean shutdown, not the default action (death by the signal).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {}
                _ = wait(term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
