//! GetContainerEvents: a stream of every pod's and container's lifecycle events from the moment
//! of the call, for kubelet's evented PLEG, as containerd 1.7+ serves it (1.6 does not: its
//! answer is Unimplemented).
//!
//! Each event carries the pod's status and the statuses of its containers, read when the event is
//! sent (containerd reads them when it generates the event): kubelet takes them as the pod's state
//! at that moment. A pod's own event has the pod's id as `container_id`; a pod already removed
//! (its DELETED event) has no status. A subscriber that falls behind loses the oldest events
//! (logged, see [`crate::events`]); the stream ends when the client goes away or the daemon stops.

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tokio::sync::broadcast::error::RecvError;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use super::container_status::statuses_of_pod;
use super::pod_sandbox_status::status_of;
use super::{Cri, Streamed};
use crate::events::{Event, EventKind};

pub(super) fn get_container_events(cri: &Arc<Cri>) -> Streamed<v1::ContainerEventResponse> {
    let mut events = cri.events.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let cri = cri.clone();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(lost)) => {
                    tracing::warn!(lost, "GetContainerEvents: a slow client lost the oldest events");
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let response = response(&cri, event).await;
            if tx.send(Ok(response)).await.is_err() {
                break;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn response(cri: &Arc<Cri>, event: Event) -> v1::ContainerEventResponse {
    let kind = match event.kind {
        EventKind::Created => v1::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => v1::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => v1::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => v1::ContainerEventType::ContainerDeletedEvent,
    };
    let pod_sandbox_status = match cri.store.pod(&event.pod_id) {
        Ok(record) => match status_of(cri, record).await {
            Ok((status, _, _)) => Some(status),
            Err(e) => {
                tracing::warn!(pod_id = %event.pod_id, error = %e.message(), "GetContainerEvents: the pod's status");
                None
            }
        },
        Err(_) => None,
    };
    let containers_statuses = if pod_sandbox_status.is_some() { statuses_of_pod(cri, &event.pod_id).await } else { Vec::new() };
    v1::ContainerEventResponse {
        container_id: event.id,
        container_event_type: kind as i32,
        created_at: event.at,
        pod_sandbox_status,
        containers_statuses,
    }
}
