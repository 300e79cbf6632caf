//! The lifecycles of pods and containers: their states, the changes allowed between them, and
//! the one way a change is made ([`change`]), which finishes or rolls back whatever happens to the
//! RPC that asked for it.
//!
//! Pods (the pause container, the network namespace, CNI):
//!
//! ```text
//!   RunPodSandbox                 (netns, CNI ADD,                StopPodSandbox, or the
//!   (name reserved)                pause created + started)       pause exited on its own
//!  (none) ────────────▶ Creating ─────────────────────────▶ Ready ───────────────────────▶ NotReady
//!                          │                                                                  │  ▲
//!                          │ a step failed, the daemon was killed                             │  │ StopPodSandbox
//!                          │ (recovery), or the change was cut off:                           │  │ again: no-op
//!                          ▼ every step undone, the name released                             ▼  │
//!                       (none) ◀────────────────────────────────────────────────────── RemovePodSandbox
//! ```
//!
//! Containers (the monitor, the OCI container, the snapshot):
//!
//! ```text
//!   CreateContainer               StartContainer               exit, or StopContainer
//!  (none) ─────────▶ Creating ──▶ Created ─────────────────▶ Running ──────────────────▶ Exited
//!                       │            │                          │                          │
//!                       │ failed     │ the init died unstarted  │ the monitor vanished     │
//!                       ▼            ▼ or the start failed      ▼ with no exit record      │
//!                    (none)        Exited                    Unknown ───── stop ──────▶ Exited
//!                                                                                          │
//!                                  (none) ◀──────────── RemoveContainer ◀──────────────────┘
//!                                                        (also from Created, Unknown)
//! ```
//!
//! A create is also undone when its client gave up; StopContainer leaves a created container
//! created (containerd 1.6). `crate::containers` makes these changes.
//!
//! A record's state changes only through [`PodState::can_become`] / [`ContainerState::can_become`]
//! checked by the store; the work between two states runs through [`change`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// A pod's state. `Creating` is only ever seen on disk after a crash: recovery undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodState {
    Creating,
    Ready,
    NotReady,
}

impl PodState {
    /// Whether a pod in `self` may move to `to` (see the diagram above). Removal is not a state:
    /// the store removes a record in `Creating` (rollback) or `NotReady` only.
    pub fn can_become(self, to: PodState) -> bool {
        use PodState::*;
        matches!((self, to), (Creating, Ready) | (Creating, NotReady) | (Ready, NotReady) | (NotReady, NotReady))
    }

    /// Whether the record may be removed in this state.
    pub fn removable(self) -> bool {
        matches!(self, PodState::Creating | PodState::NotReady)
    }
}

/// A container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Creating,
    Created,
    Running,
    Exited,
    /// The monitor is gone and left no exit record: what became of the process is not known.
    Unknown,
}

impl ContainerState {
    /// Whether a container in `self` may move to `to` (see the diagram above).
    pub fn can_become(self, to: ContainerState) -> bool {
        use ContainerState::*;
        matches!(
            (self, to),
            (Creating, Created)
                | (Created, Running)
                | (Created, Exited)
                | (Running, Exited)
                | (Running, Unknown)
                | (Created, Unknown)
                | (Unknown, Exited)
        )
    }

    /// Whether the record may be removed in this state (a running container is stopped first).
    pub fn removable(self) -> bool {
        matches!(self, ContainerState::Creating | ContainerState::Created | ContainerState::Exited | ContainerState::Unknown)
    }
}

type UndoFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type UndoStep = Box<dyn FnOnce() -> UndoFuture + Send>;

/// The steps a change has taken so far, each with what undoes it. Cloned into the change's work
/// (it is a handle); [`change`] runs the undo steps, last first, when the work fails.
#[derive(Clone)]
pub struct Rollback {
    what: Arc<str>,
    steps: Arc<Mutex<Vec<(String, UndoStep)>>>,
}

impl Rollback {
    /// A rollback for the change described by `what` (for logs: "run pod sandbox ID").
    pub fn new(what: impl Into<String>) -> Rollback {
        Rollback { what: Arc::from(what.into()), steps: Arc::default() }
    }

    /// Record that a step was taken, and how to undo it.
    pub fn push<F, Fut>(&self, step: impl Into<String>, undo: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let undo: UndoStep = Box::new(move || Box::pin(undo()));
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).push((step.into(), undo));
    }

    /// Undo every step, last first. An undo that fails is logged and the others still run: a
    /// half-undone change is reported, never left silently.
    async fn run(&self) -> Vec<String> {
        let steps = std::mem::take(&mut *self.steps.lock().unwrap_or_else(|e| e.into_inner()));
        let mut failures = Vec::new();
        for (step, undo) in steps.into_iter().rev() {
            if let Err(reason) = undo().await {
                tracing::error!(change = %self.what, step = %step, error = %reason, "undo a step of a failed change");
                failures.push(format!("undo {step}: {reason}"));
            }
        }
        failures
    }
}

/// Errors of [`change`] besides the work's own.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError<E> {
    /// The work failed; its steps were undone (`undo_failures` lists the undo steps that failed).
    #[error("{source}")]
    Failed { source: E, undo_failures: Vec<String> },
    /// The work's task ended without an answer: it panicked (where panics unwind: debug builds;
    /// the release build aborts, and recovery undoes the change from its record at the next start)
    /// or the runtime is shutting down. Its steps were undone where the runtime still ran them.
    #[error("{what}: the change was interrupted ({reason}); its steps were undone")]
    Interrupted { what: String, reason: String, undo_failures: Vec<String> },
}

/// Run `work` (a lifecycle change of one pod or container) to the end on a task of its own, so
/// that an RPC whose client gave up (deadline, disconnect: tonic then drops the handler's future)
/// still sees its change finished or rolled back, never half-made. On failure the steps recorded
/// in `rollback` are undone, last first, before the error is returned.
pub async fn change<T, E, W>(rollback: Rollback, work: W) -> Result<T, ChangeError<E>>
where
    T: Send + 'static,
    E: Send + 'static,
    W: Future<Output = Result<T, E>> + Send + 'static,
{
    let task = tokio::spawn(async move {
        let result = tokio::spawn(work).await;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(ChangeError::Failed { source, undo_failures: rollback.run().await }),
            Err(join) => Err(ChangeError::Interrupted {
                what: rollback.what.to_string(),
                reason: join.to_string(),
                undo_failures: rollback.run().await,
            }),
        }
    });
    match task.await {
        Ok(result) => result,
        // The outer task only awaits and undoes: it ends early only when the runtime shuts down.
        Err(join) => Err(ChangeError::Interrupted { what: "change".into(), reason: join.to_string(), undo_failures: Vec::new() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn pod_transitions_follow_the_diagram() {
        use PodState::*;
        let all = [Creating, Ready, NotReady];
        let allowed: Vec<_> =
            all.iter().flat_map(|&a| all.iter().map(move |&b| (a, b))).filter(|&(a, b)| a.can_become(b)).collect();
        assert_eq!(allowed, vec![(Creating, Ready), (Creating, NotReady), (Ready, NotReady), (NotReady, NotReady)]);
        assert!(!Ready.removable());
        assert!(NotReady.removable() && Creating.removable());
    }

    #[test]
    fn container_transitions_follow_the_diagram() {
        use ContainerState::*;
        assert!(Creating.can_become(Created));
        assert!(!Creating.can_become(Running), "a container is started only once created");
        assert!(!Exited.can_become(Running), "an exited container is never started again");
        assert!(!Running.can_become(Created));
        assert!(Unknown.can_become(Exited));
        assert!(!Running.removable());
        assert!(Exited.removable() && Created.removable() && Unknown.removable());
    }

    #[tokio::test]
    async fn a_failed_change_undoes_its_steps_last_first() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let rollback = Rollback::new("test change");
        let (r, o) = (rollback.clone(), order.clone());
        let result: Result<(), _> = change(rollback, async move {
            for step in ["netns", "cni", "pause"] {
                let o = o.clone();
                r.push(step, move || async move {
                    o.lock().unwrap().push(step);
                    Ok(())
                });
            }
            Err("the pause container did not start")
        })
        .await;
        assert!(matches!(result, Err(ChangeError::Failed { source: "the pause container did not start", .. })));
        assert_eq!(*order.lock().unwrap(), vec!["pause", "cni", "netns"]);
    }

    #[tokio::test]
    async fn undo_failures_are_reported_and_the_rest_still_run() {
        let ran = Arc::new(AtomicUsize::new(0));
        let rollback = Rollback::new("test change");
        let (r, n) = (rollback.clone(), ran.clone());
        let result: Result<(), ChangeError<&str>> = change(rollback, async move {
            let n2 = n.clone();
            r.push("first", move || async move {
                n2.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
            r.push("second", || async { Err("device busy".to_string()) });
            Err("boom")
        })
        .await;
        match result {
            Err(ChangeError::Failed { undo_failures, .. }) => assert_eq!(undo_failures, vec!["undo second: device busy"]),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_successful_change_undoes_nothing() {
        let rollback = Rollback::new("test change");
        let r = rollback.clone();
        let undone = Arc::new(AtomicUsize::new(0));
        let u = undone.clone();
        let v: Result<u32, ChangeError<()>> = change(rollback, async move {
            r.push("step", move || async move {
                u.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
            Ok(7)
        })
        .await;
        assert_eq!(v.unwrap(), 7);
        assert_eq!(undone.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_change_whose_caller_gave_up_still_finishes() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let caller = tokio::spawn(change::<(), (), _>(Rollback::new("test change"), async move {
            rx.await.ok();
            d.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        // The RPC's future is dropped (client deadline), then the work is allowed to go on.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        caller.abort();
        tx.send(()).unwrap();
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the change did not finish after its caller was cancelled");
    }

    #[tokio::test]
    async fn a_panicking_change_is_rolled_back_where_panics_unwind() {
        let undone = Arc::new(AtomicUsize::new(0));
        let rollback = Rollback::new("test change");
        let (r, u) = (rollback.clone(), undone.clone());
        let result: Result<(), ChangeError<()>> = change(rollback, async move {
            r.push("step", move || async move {
                u.fetch_add(1, Ordering::SeqCst);
                Ok(())
            });
            panic!("bug in a step");
        })
        .await;
        assert!(matches!(result, Err(ChangeError::Interrupted { .. })));
        assert_eq!(undone.load(Ordering::SeqCst), 1);
    }
}
