//! What the container RPCs share: decoding a record's stored request, the CRI view of a
//! record, and the gRPC status of a lifecycle error.

use std::collections::HashMap;

use prost::Message;
use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use crate::containers::LifecycleError;
use crate::monitor::MonitorError;
use crate::store::{ContainerRecord, ContainerState, StoreError};

/// The `ContainerConfig` a record was created from.
pub fn config_of(rec: &ContainerRecord) -> Result<v1::ContainerConfig, Status> {
    v1::ContainerConfig::decode(rec.config.as_slice())
        .map_err(|e| Status::internal(format!("container {}: the stored config does not decode: {e}", rec.id)))
}

/// The resources in force: the last UpdateContainerResources', else the config's.
pub fn resources_of(rec: &ContainerRecord, config: &v1::ContainerConfig) -> Option<v1::LinuxContainerResources> {
    match &rec.resources {
        Some(bytes) => v1::LinuxContainerResources::decode(bytes.as_slice()).ok(),
        None => config.linux.as_ref().and_then(|l| l.resources.clone()),
    }
}

pub fn cri_state(s: ContainerState) -> v1::ContainerState {
    match s {
        ContainerState::Creating | ContainerState::Created => v1::ContainerState::ContainerCreated,
        ContainerState::Running => v1::ContainerState::ContainerRunning,
        ContainerState::Exited => v1::ContainerState::ContainerExited,
        ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
    }
}

pub fn metadata(rec: &ContainerRecord) -> v1::ContainerMetadata {
    v1::ContainerMetadata { name: rec.metadata.name.clone(), attempt: rec.metadata.attempt }
}

/// ListContainers' view of a record (containerd's `toCRIContainer`: the image as the config
/// named it, the image ID as its ref).
pub fn to_container(rec: &ContainerRecord, config: &v1::ContainerConfig) -> v1::Container {
    v1::Container {
        id: rec.id.clone(),
        pod_sandbox_id: rec.pod_id.clone(),
        metadata: Some(metadata(rec)),
        image: config.image.clone(),
        image_ref: rec.image_ref.clone(),
        state: cri_state(rec.state) as i32,
        created_at: rec.created_at,
        labels: to_map(&rec.labels),
        annotations: to_map(&rec.annotations),
        image_id: rec.image_ref.clone(),
    }
}

pub fn to_map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The gRPC status of a lifecycle error in `rpc`: an unknown id is NotFound, an ambiguous
/// prefix InvalidArgument, a change the lifecycle refuses FailedPrecondition, the rest Unknown
/// (as containerd answers errors of its own).
pub fn lifecycle_status(rpc: &str, e: LifecycleError) -> Status {
    let message = format!("{rpc}: {e}");
    match e {
        LifecycleError::Store(StoreError::NotFound { .. }) => Status::not_found(message),
        LifecycleError::Store(StoreError::Ambiguous { .. }) => Status::invalid_argument(message),
        LifecycleError::Store(StoreError::Transition { .. } | StoreError::NotRemovable { .. }) => {
            Status::failed_precondition(message)
        }
        LifecycleError::Store(StoreError::NameReserved { .. } | StoreError::Exists { .. }) => Status::already_exists(message),
        LifecycleError::Monitor(MonitorError::Refused { kind: libcontainer::monitor::ErrorKind::FailedPrecondition, .. }) => {
            Status::failed_precondition(message)
        }
        _ => {
            tracing::error!(rpc, error = %message, "failed");
            Status::unknown(message)
        }
    }
}

/// The record of container `id` (an id or unique prefix), or NotFound. A container still being
/// created is not there yet (containerd adds it to its store at the end of CreateContainer).
pub fn find(cri: &super::Cri, rpc: &str, id: &str) -> Result<ContainerRecord, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument(format!("{rpc}: container_id: empty")));
    }
    let rec = cri.store.container(id).map_err(|e| lifecycle_status(rpc, e.into()))?;
    if rec.state == ContainerState::Creating {
        return Err(Status::not_found(format!("{rpc}: container {id:?} not found (it is being created)")));
    }
    Ok(rec)
}

/// Container `id`'s record once any exit its monitor left is recorded (call with the container's
/// lock held), or NotFound.
pub async fn settled(cri: &super::Cri, rpc: &str, id: &str) -> Result<ContainerRecord, Status> {
    cri.containers
        .settle(id)
        .await
        .map_err(|e| lifecycle_status(rpc, e))?
        .ok_or_else(|| Status::not_found(format!("{rpc}: container {id:?} not found")))
}
