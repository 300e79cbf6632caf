//! roci-cri: the Kubernetes Container Runtime Interface (runtime.v1) served over a Unix socket.
//!
//! - [`checkpoint`]: the archive CheckpointContainer writes (CRIU images, specs, rootfs diff).
//! - [`config`]: the TOML file and the flags over it.
//! - [`apparmor`]: the default AppArmor profile, loaded at startup on an AppArmor host.
//! - [`socket`]: the daemon's socket (one owner, stale sockets replaced, mode 0660).
//! - [`server`]: the RuntimeService and ImageService, one file per RPC; the only place protobuf
//!   types appear.
//! - [`events`]: pod and container lifecycle events for `GetContainerEvents`.
//! - [`images`]: the image root (`<root>/images`, libimage's) as the CRI sees it.
//! - [`layout`]: where each pod's and container's files live under the state directory.
//! - [`network`]: pod networking: the CNI configuration in force, pinned network namespaces,
//!   CNI plugin execution (ADD, DEL, CHECK) with cached results.
//! - [`store`]: pods and containers on disk, their names and lifecycles.
//! - [`stats`]: what the stats RPCs report: cgroup CPU and memory, writable layers, pod networks.
//! - [`monitor`]: starting a container's monitor (`roci monitor`) and its control client.
//! - [`containers`]: containers between RPCs: a watcher per monitor, exits recorded, stop,
//!   removal, recovery before serving.
//! - [`serve`]: binds the socket and serves until SIGTERM or SIGINT, then removes the socket.
//!
//! The daemon never forks: every pod's pause container (and every container) has a monitor
//! process of its own ([`monitor::spawn`]), so that no container is ever a child of this async
//! process. Before it serves, [`serve`] recovers the pods on disk ([`server::recover`]).

pub mod apparmor;
pub mod checkpoint;
pub mod config;
pub mod containers;
pub mod events;
pub mod images;
pub mod layout;
pub mod monitor;
pub mod network;
pub mod server;
pub mod socket;
pub mod stats;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tonic::codegen::tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error("create the {what} directory {path}: {source}")]
    CreateDir { what: &'static str, path: std::path::PathBuf, source: std::io::Error },
    #[error("install the {signal} handler: {source}")]
    Signal { signal: &'static str, source: std::io::Error },
    #[error(transparent)]
    Cri(#[from] server::CriError),
    #[error(transparent)]
    AppArmor(#[from] apparmor::AppArmorError),
    #[error("load the default AppArmor profile: the task failed: {0}")]
    AppArmorTask(String),
    #[error("root {root}: {reason}")]
    RootInUse { root: std::path::PathBuf, reason: String },
    #[error("serve gRPC on {path}: {source}")]
    Serve { path: std::path::PathBuf, source: tonic::transport::Error },
    #[error("serve gRPC on {path}: the server task failed: {reason}")]
    Panicked { path: std::path::PathBuf, reason: String },
}

/// How long in-flight calls and open connections get to finish after SIGTERM/SIGINT. kubelet
/// keeps its connection open for good, so without a bound a stop would wait for kubelet.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The lock file under `root` that makes its records one daemon's.
const ROOT_LOCK: &str = "roci-cri.lock";

/// Serve the CRI on the configured socket until SIGTERM or SIGINT. In-flight calls get
/// [`SHUTDOWN_GRACE`] to finish; the socket is removed before returning. Must run inside a tokio
/// runtime.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    for (what, path) in [("root", &config.root), ("state", &config.state)] {
        std::fs::create_dir_all(path).map_err(|source| ServeError::CreateDir { what, path: path.clone(), source })?;
    }
    // The root's records are this daemon's alone: a second roci-cri on them would run its recovery
    // over pods and containers the first is making or running.
    let _root_lock = socket::lock_exclusive(&config.root.join(ROOT_LOCK))
        .map_err(|e| ServeError::RootInUse { root: config.root.clone(), reason: format!("{}: {e}", ROOT_LOCK) })?;
    let mut term = signal(SignalKind::terminate()).map_err(|source| ServeError::Signal { signal: "SIGTERM", source })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| ServeError::Signal { signal: "SIGINT", source })?;
    // The default AppArmor profile before anything is served or recovered: RuntimeDefault means it.
    let enabled = libcontainer::lsm::apparmor_enabled();
    let configured = config.apparmor_default_profile.clone();
    let apparmor_default = tokio::task::spawn_blocking(move || apparmor::ensure_default(enabled, &configured))
        .await
        .map_err(|e| ServeError::AppArmorTask(e.to_string()))??;
    let config = Arc::new(config);
    // Before the socket: a daemon that cannot serve images leaves no socket behind.
    let cri = server::Cri::new(config.clone(), apparmor_default)?;
    // Recovery before serving: no RPC sees a pod half-made by a daemon that was killed.
    let recovered = server::recover(&cri).await;
    tracing::info!(?recovered, "recovered the pods on disk");
    // Every container found again, before anything is served (nothing is started twice).
    let failed = cri.recover_containers().await;
    tracing::info!(failed, "recovered the containers on disk");
    let socket::Listener { listener, path, lock } = socket::Listener::bind(&config.socket)?;
    let (runtime, images) = server::services(cri);
    tracing::info!(socket = %path.display(), root = %config.root.display(), state = %config.state.display(), "serving the CRI");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut serving =
        tokio::spawn(tonic::transport::Server::builder().add_service(runtime).add_service(images).serve_with_incoming_shutdown(
            UnixListenerStream::new(listener),
            async {
                stopped.await.ok();
            },
        ));
    let served = tokio::select! {
        _ = term.recv() => Err("SIGTERM"),
        _ = int.recv() => Err("SIGINT"),
        ended = &mut serving => Ok(ended),
    };
    let served = match served {
        Ok(ended) => ended,
        Err(signal) => {
            tracing::info!(signal, "shutting down");
            stop.send(()).ok();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await {
                Ok(ended) => ended,
                Err(_) => {
                    tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period: closing them");
                    serving.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(socket = %path.display(), error = %e, "remove the socket");
    }
    drop(lock);
    match served {
        Ok(result) => result.map_err(|source| ServeError::Serve { path, source }),
        Err(join) => Err(ServeError::Panicked { path, reason: join.to_string() }),
    }
}
