//! StopContainer, as containerd 1.6: NotFound for an unknown id; a running container gets its
//! stop signal (the image's `StopSignal`, else SIGTERM), `timeout` seconds to exit, then SIGKILL,
//! and the call returns once it has exited; a created or exited container is left as it is.

use std::sync::Arc;
use std::time::Duration;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::containers::{find, lifecycle_status};
use super::Cri;

const RPC: &str = "StopContainer";

pub async fn stop_container(cri: &Arc<Cri>, req: &v1::StopContainerRequest) -> Result<v1::StopContainerResponse, Status> {
    let rec = find(cri, RPC, &req.container_id)?;
    let timeout = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
    let _lock = cri.store.lock(&rec.id).await;
    cri.containers.stop(&rec.id, timeout).await.map_err(|e| lifecycle_status(RPC, e))?;
    Ok(v1::StopContainerResponse {})
}
