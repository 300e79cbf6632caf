//! UpdateContainerResources, as containerd 1.6: the new limits go into the live cgroup of a
//! created or running container (libcontainer's `update`, in this process: it writes cgroup
//! files and the container's saved state, and starts nothing), and are kept in the record, so
//! that ContainerStatus reports them; an exited container only has them recorded.

use std::sync::Arc;

use prost::Message;
use roci_cri_proto::runtime_v1 as v1;
use serde_json::json;
use tonic::Status;

use super::containers::{find, lifecycle_status, settled};
use super::spec::container::resources;
use super::Cri;
use crate::store::ContainerState;

const RPC: &str = "UpdateContainerResources";

pub async fn update_container_resources(
    cri: &Arc<Cri>,
    req: &v1::UpdateContainerResourcesRequest,
) -> Result<v1::UpdateContainerResourcesResponse, Status> {
    let rec = find(cri, RPC, &req.container_id)?;
    let Some(linux) = req.linux.clone() else {
        // containerd 1.6 applies nothing without Linux resources.
        return Ok(v1::UpdateContainerResourcesResponse {});
    };
    let oci = oci_resources(&linux, &cri.host)?;
    let _lock = cri.store.lock(&rec.id).await;
    let rec = settled(cri, RPC, &rec.id).await?;
    if matches!(rec.state, ContainerState::Created | ContainerState::Running) {
        let root = cri.layout.roci_root();
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || libcontainer::container::update::update(&root, &id, &oci))
            .await
            .map_err(|e| Status::internal(format!("{RPC}: {e}")))?
            .map_err(|e| Status::unknown(format!("{RPC}: update the cgroup of container {}: {e}", rec.id)))?;
    }
    let bytes = linux.encode_to_vec();
    cri.containers.change(&rec.id, move |r| r.resources = Some(bytes)).await.map_err(|e| lifecycle_status(RPC, e))?;
    Ok(v1::UpdateContainerResourcesResponse {})
}

/// The OCI `linux.resources` of the CRI's, by the rules CreateContainer uses.
fn oci_resources(
    r: &v1::LinuxContainerResources,
    host: &super::spec::HostFacts,
) -> Result<oci_spec::runtime::LinuxResources, Status> {
    let mut s = json!({ "linux": { "resources": {} }, "process": {} });
    resources(&mut s, r, host, "linux").map_err(|e| {
        let s: Status = e.into();
        Status::new(s.code(), format!("{RPC}: {}", s.message()))
    })?;
    serde_json::from_value(s["linux"]["resources"].take())
        .map_err(|e| Status::invalid_argument(format!("{RPC}: linux: not valid OCI resources: {e}")))
}
