//! ReopenContainerLog: the monitor opens the log file again by its path (after kubelet renamed
//! it for rotation). Only a running container has a log open (containerd 1.6: "container is not
//! running").

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::containers::{find, lifecycle_status};
use super::Cri;
use crate::monitor::Client;
use crate::store::ContainerState;

const RPC: &str = "ReopenContainerLog";

pub async fn reopen_container_log(
    cri: &Arc<Cri>,
    req: &v1::ReopenContainerLogRequest,
) -> Result<v1::ReopenContainerLogResponse, Status> {
    let rec = find(cri, RPC, &req.container_id)?;
    let rec = cri.containers.current(rec).await;
    if rec.state != ContainerState::Running {
        return Err(Status::failed_precondition(format!("{RPC}: container {} is not running", rec.id)));
    }
    Client::new(cri.layout.container_monitor(&rec.id).socket).reopen_log().await.map_err(|e| lifecycle_status(RPC, e.into()))?;
    Ok(v1::ReopenContainerLogResponse {})
}
