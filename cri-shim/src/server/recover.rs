//! Recovery, before the daemon serves: the records on disk are the truth, and what a killed
//! daemon left half-made is finished or undone.
//!
//! - A pod in `Creating` (the daemon died inside RunPodSandbox) is undone from what is on disk:
//!   its pause container (`roci delete --force`), root filesystem, network (CNI DEL with the
//!   cached result, the netns unpinned), `/dev/shm`, directory; then its record, releasing the
//!   name.
//! - A `Ready` pod whose pause has gone meanwhile becomes `NotReady` (kubelet then stops and
//!   removes it); a running pause keeps running, untouched, and is watched again
//!   (`sandbox::watch_pause`).
//!
//! A pod that cannot be undone is logged and kept (its name stays reserved, RemovePodSandbox
//! retries); the daemon still serves the others.

use std::sync::Arc;

use super::remove_pod_sandbox::release;
use super::sandbox::{self, Sandbox};
use super::Cri;
use crate::store::PodState;

/// What recovery did, for the log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub ready: usize,
    pub not_ready: usize,
    pub undone: usize,
    pub failed: usize,
}

pub async fn recover(cri: &Arc<Cri>) -> Recovered {
    let mut done = Recovered::default();
    // The CRIU work directories of checkpoints a killed daemon was writing (a partial archive,
    // a hidden `.<name>.partial-<pid>` beside its location, is not known here).
    if let Err(e) = crate::checkpoint::remove_leftovers(&cri.config.root) {
        tracing::error!(error = %e, "recovery: remove the work directories of interrupted checkpoints");
    }
    for record in cri.store.pods() {
        let id = record.id.clone();
        match record.state {
            PodState::Creating => {
                let undone = match Sandbox::of(record) {
                    Ok(pod) => release(cri, &pod).await,
                    Err(e) => Err(e.message().to_owned()),
                };
                let removed = match undone {
                    Ok(()) => {
                        let store = cri.store.clone();
                        let pod_id = id.clone();
                        tokio::task::spawn_blocking(move || store.remove_pod(&pod_id))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r.map_err(|e| e.to_string()))
                    }
                    Err(e) => Err(e),
                };
                match removed {
                    Ok(()) => {
                        tracing::info!(pod = %id, "recovery: undid a pod left half-made");
                        done.undone += 1;
                    }
                    Err(e) => {
                        tracing::error!(pod = %id, error = %e, "recovery: undo a pod left half-made");
                        done.failed += 1;
                    }
                }
            }
            PodState::Ready => {
                if sandbox::pause_state(&cri.layout, &record).await.running() {
                    sandbox::watch_pause(cri, &id, record.pid);
                    done.ready += 1;
                    continue;
                }
                let store = cri.store.clone();
                let pod_id = id.clone();
                let saved =
                    tokio::task::spawn_blocking(move || store.update_pod(&pod_id, |r| r.state = PodState::NotReady)).await;
                match saved {
                    Ok(Ok(_)) => {
                        tracing::info!(pod = %id, "recovery: the pause exited while the daemon was away: NotReady");
                        done.not_ready += 1;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(pod = %id, error = %e, "recovery: mark a pod whose pause exited NotReady");
                        done.failed += 1;
                    }
                    Err(e) => {
                        tracing::error!(pod = %id, error = %e, "recovery: the blocking task failed");
                        done.failed += 1;
                    }
                }
            }
            PodState::NotReady => done.not_ready += 1,
        }
    }
    done
}
