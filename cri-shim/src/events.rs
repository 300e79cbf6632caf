//! Lifecycle events of pods and containers, for `GetContainerEvents` (kubelet's evented PLEG).
//!
//! The code that changes a pod's or a container's state emits an [`Event`] once the change is
//! saved; every open `GetContainerEvents` stream gets every event from the moment it subscribed
//! (containerd 1.7+ behaves so; containerd 1.6 does not serve the RPC). Events are not stored: a
//! subscriber that falls more than [`BUFFER`] events behind loses the oldest ones (logged), as
//! kubelet's evented PLEG expects and recovers from with its periodic relist.

use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it loses some (containerd's channel
/// holds 1000; a power of two is what the broadcast channel keeps exactly).
pub const BUFFER: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// One change of a pod (its `id` is the pod's) or of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The container's id, or the pod's for a pod's event.
    pub id: String,
    /// The pod the container belongs to (the pod itself for a pod's event).
    pub pod_id: String,
    pub kind: EventKind,
    /// Nanoseconds since the epoch.
    pub at: i64,
}

/// The daemon's event bus.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Events {
        Events { tx: broadcast::channel(BUFFER).0 }
    }
}

impl Events {
    /// Tell every subscriber; no subscriber is fine.
    pub fn emit(&self, id: &str, pod_id: &str, kind: EventKind) {
        let event = Event { id: id.to_owned(), pod_id: pod_id.to_owned(), kind, at: now_nanos() };
        tracing::debug!(id, pod_id, kind = ?kind, "event");
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_what_follows_their_subscription() {
        let events = Events::default();
        events.emit("early", "p", EventKind::Created);
        let mut a = events.subscribe();
        let mut b = events.subscribe();
        events.emit("c1", "p", EventKind::Started);
        for rx in [&mut a, &mut b] {
            let e = rx.recv().await.unwrap();
            assert_eq!((e.id.as_str(), e.pod_id.as_str(), e.kind), ("c1", "p", EventKind::Started));
            assert!(e.at > 0);
            assert!(rx.try_recv().is_err(), "nothing before the subscription");
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_the_oldest_and_goes_on() {
        let events = Events::default();
        let mut rx = events.subscribe();
        for i in 0..BUFFER + 5 {
            events.emit(&i.to_string(), "p", EventKind::Stopped);
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(5))));
        assert_eq!(rx.recv().await.unwrap().id, "5");
    }
}
