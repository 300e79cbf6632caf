//! ListPodSandbox: every pod (those being created are not listed yet, as containerd adds a pod
//! to its store only once made), filtered by id (exact, or a unique prefix as containerd resolves
//! it), state (the live state: a pod whose pause exited is NotReady) and label selector (every
//! pair equal).

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::filter::labels_match;
use super::pod_sandbox_status::state_of;
use super::sandbox;
use super::Cri;
use crate::store::PodState;

pub(super) async fn list_pod_sandbox(
    cri: &Arc<Cri>,
    request: &v1::ListPodSandboxRequest,
) -> Result<v1::ListPodSandboxResponse, Status> {
    let filter = request.filter.clone().unwrap_or_default();
    let id = if filter.id.is_empty() {
        None
    } else {
        // containerd resolves a prefix and otherwise keeps the filter as given (matching nothing).
        Some(cri.store.pod(&filter.id).map(|p| p.id).unwrap_or(filter.id.clone()))
    };
    let mut items = Vec::new();
    for record in cri.store.pods() {
        if record.state == PodState::Creating || id.as_ref().is_some_and(|id| *id != record.id) {
            continue;
        }
        if !labels_match(&filter.label_selector, &record.labels) {
            continue;
        }
        let pause = sandbox::pause_state(&cri.layout, &record).await;
        let state = state_of(&record, &pause);
        if filter.state.as_ref().is_some_and(|s| s.state != state as i32) {
            continue;
        }
        let meta = &record.metadata;
        items.push(v1::PodSandbox {
            id: record.id.clone(),
            metadata: Some(v1::PodSandboxMetadata {
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                namespace: meta.namespace.clone(),
                attempt: meta.attempt,
            }),
            state: state as i32,
            created_at: record.created_at,
            labels: record.labels.clone().into_iter().collect(),
            annotations: record.annotations.clone().into_iter().collect(),
            runtime_handler: record.runtime_handler.clone(),
        });
    }
    Ok(v1::ListPodSandboxResponse { items })
}
