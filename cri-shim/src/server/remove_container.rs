//! RemoveContainer, as containerd 1.6: an unknown id is already removed (no error); a running
//! or unknown container is stopped at once (SIGKILL) first; then the OCI container
//! (`roci delete --force`), its bundle and snapshot, its state directory and the record go, and
//! its name is free again. The CRI log file stays (kubelet removes it).

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::containers::lifecycle_status;
use super::Cri;
use crate::store::StoreError;

const RPC: &str = "RemoveContainer";

pub async fn remove_container(cri: &Arc<Cri>, req: &v1::RemoveContainerRequest) -> Result<v1::RemoveContainerResponse, Status> {
    if req.container_id.is_empty() {
        return Err(Status::invalid_argument(format!("{RPC}: container_id: empty")));
    }
    let id = match cri.store.container(&req.container_id) {
        // Still being created: not there yet for the client (its create undoes itself or ends).
        Ok(rec) if rec.state == crate::store::ContainerState::Creating => return Ok(v1::RemoveContainerResponse {}),
        Ok(rec) => rec.id,
        Err(StoreError::NotFound { .. }) => return Ok(v1::RemoveContainerResponse {}),
        Err(e) => return Err(lifecycle_status(RPC, e.into())),
    };
    let _lock = cri.store.lock(&id).await;
    cri.containers.remove(&id).await.map_err(|e| lifecycle_status(RPC, e))?;
    Ok(v1::RemoveContainerResponse {})
}
