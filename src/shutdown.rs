//! Shutdown on a signal, shared by the daemon and the long on-call commands: the first SIGTERM or
//! SIGINT cancels a token (work drains), a second one exits at once.

use tokio_util::sync::CancellationToken;

/// Cancels `stop` on the first SIGTERM or SIGINT; exits at once on the second.
pub async fn cancel_on_signal(stop: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("signal received: stopping");
    stop.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers we can only wait for Ctrl-C through the portable path.
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
