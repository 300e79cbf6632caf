//! Whether the client of a long change (RunPodSandbox, CreateContainer) still waits for it.
//!
//! The change runs on a task of its own ([`crate::store::change`]), so it is never cut half-way;
//! but when the client gives up (its deadline passes, it disconnects: tonic drops the handler's
//! future), finishing it would make a pod or container nobody asked for any more, whose name
//! kubelet's retry then finds taken. The handler holds a [`Wanted`]; the change holds clones and
//! asks [`Wanted::check`] between its steps: once the handler's copy was dropped without
//! [`Wanted::answered`], the check fails, and every step taken is undone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::Status;

pub(super) struct Wanted {
    gave_up: Arc<AtomicBool>,
    /// Only the handler's copy marks the client gone when dropped.
    handler: bool,
    rpc: &'static str,
    /// What the change makes ("pod sandbox", "container"), for the messages.
    kind: &'static str,
}

impl Wanted {
    /// The handler's copy, for a change of `rpc` that makes a `kind`.
    pub(super) fn new(rpc: &'static str, kind: &'static str) -> Wanted {
        Wanted { gave_up: Arc::new(AtomicBool::new(false)), handler: true, rpc, kind }
    }

    /// The change returned to the handler: its drop no longer means the client gave up.
    pub(super) fn answered(mut self) {
        self.handler = false;
    }

    /// Between two steps: an error (and so the undo of every step) once the client gave up.
    pub(super) fn check(&self, id: &str) -> Result<(), Status> {
        if self.gave_up.load(Ordering::SeqCst) {
            tracing::info!(id, "the client gave up on {}: undoing it", self.rpc);
            return Err(Status::cancelled(format!("{}: the client gave up; {} {id} was undone", self.rpc, self.kind)));
        }
        Ok(())
    }
}

impl Clone for Wanted {
    fn clone(&self) -> Wanted {
        Wanted { gave_up: self.gave_up.clone(), handler: false, rpc: self.rpc, kind: self.kind }
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        if self.handler {
            self.gave_up.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_handlers_drop_means_the_client_gave_up() {
        let handler = Wanted::new("RunPodSandbox", "pod sandbox");
        let work = handler.clone();
        drop(work.clone());
        assert!(work.check("p").is_ok(), "a clone's drop is not the client's");
        drop(handler);
        let e = work.check("p").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Cancelled);
        assert_eq!(e.message(), "RunPodSandbox: the client gave up; pod sandbox p was undone");

        let handler = Wanted::new("CreateContainer", "container");
        let work = handler.clone();
        handler.answered();
        assert!(work.check("c").is_ok(), "an answered change was not given up");
    }
}
