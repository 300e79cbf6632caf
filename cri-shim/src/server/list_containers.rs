//! ListContainers: every container, or those the filter selects (containerd 1.6's rules: `id`
//! and `pod_sandbox_id` match a full id or a unique prefix of one, `state` exactly, every
//! `label_selector` pair must be among the labels). An exit the watcher has not recorded yet
//! is seen already; a container still being created is not listed.

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::containers::{config_of, cri_state, to_container};
use super::filter::labels_match;
use super::Cri;
use crate::store::ContainerState;

pub async fn list_containers(cri: &Arc<Cri>, req: &v1::ListContainersRequest) -> Result<v1::ListContainersResponse, Status> {
    let filter = req.filter.clone().unwrap_or_default();
    // A prefix resolves to its container or pod first; one that names none selects nothing.
    let id = if filter.id.is_empty() {
        None
    } else {
        match cri.store.container(&filter.id) {
            Ok(r) => Some(r.id),
            Err(_) => return Ok(v1::ListContainersResponse { containers: vec![] }),
        }
    };
    let pod = if filter.pod_sandbox_id.is_empty() {
        None
    } else {
        match cri.store.pod(&filter.pod_sandbox_id) {
            Ok(p) => Some(p.id),
            Err(_) => return Ok(v1::ListContainersResponse { containers: vec![] }),
        }
    };
    let mut containers = Vec::new();
    // A container being created (or undone) is not listed, as containerd lists only what it
    // finished creating.
    for rec in cri.store.containers().into_iter().filter(|r| r.state != ContainerState::Creating) {
        if id.as_ref().is_some_and(|id| *id != rec.id) || pod.as_ref().is_some_and(|p| *p != rec.pod_id) {
            continue;
        }
        if !labels_match(&filter.label_selector, &rec.labels) {
            continue;
        }
        let rec = cri.containers.current(rec).await;
        if filter.state.as_ref().is_some_and(|s| s.state != cri_state(rec.state) as i32) {
            continue;
        }
        containers.push(to_container(&rec, &config_of(&rec)?));
    }
    Ok(v1::ListContainersResponse { containers })
}
