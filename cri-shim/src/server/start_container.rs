//! StartContainer: the monitor releases the created container's program; the record goes to
//! Running with the monitor's start time. A start that fails leaves the container Exited with
//! containerd 1.6's `StartError` (exit code 128, the error as its message) and its init killed.

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::containers::{find, lifecycle_status, settled};
use super::Cri;
use crate::containers::{now_ns, parse_time};
use crate::monitor::Client;
use crate::store::ContainerState;

const RPC: &str = "StartContainer";

/// containerd's `errorStartExitCode` and `errorStartReason`.
const START_ERROR_CODE: i32 = 128;
const START_ERROR_REASON: &str = "StartError";

pub async fn start_container(cri: &Arc<Cri>, req: &v1::StartContainerRequest) -> Result<v1::StartContainerResponse, Status> {
    let rec = find(cri, RPC, &req.container_id)?;
    let _lock = cri.store.lock(&rec.id).await;
    let containers = &cri.containers;
    let rec = settled(cri, RPC, &rec.id).await?;
    if rec.state != ContainerState::Created {
        // containerd 1.6 answers Unknown ("container is in CONTAINER_EXITED state").
        return Err(Status::failed_precondition(format!("{RPC}: container {} is {:?}, not created", rec.id, rec.state)));
    }
    let pod = cri.store.pod(&rec.pod_id).map_err(|e| lifecycle_status(RPC, e.into()))?;
    if pod.state != crate::store::PodState::Ready {
        return Err(Status::failed_precondition(format!("{RPC}: pod sandbox {} is not ready", pod.id)));
    }
    let client = Client::new(cri.layout.container_monitor(&rec.id).socket);
    match client.start().await {
        Ok(started_at) => {
            let at = parse_time(&started_at);
            containers
                .change(&rec.id, move |r| {
                    r.state = ContainerState::Running;
                    r.started_at = if at > 0 { at } else { now_ns() };
                })
                .await
                .map_err(|e| lifecycle_status(RPC, e))?;
            Ok(v1::StartContainerResponse {})
        }
        Err(e) => {
            let message = format!("{RPC}: start container {}: {e}", rec.id);
            if let Err(k) = containers.stop(&rec.id, std::time::Duration::ZERO).await {
                tracing::warn!(id = rec.id, error = %k, "stop a container that failed to start");
            }
            let m = e.to_string();
            let _ = containers
                .change(&rec.id, move |r| {
                    if matches!(r.state, ContainerState::Created) {
                        r.state = ContainerState::Exited;
                        r.finished_at = now_ns();
                        r.exit_code = START_ERROR_CODE;
                        r.reason = START_ERROR_REASON.into();
                        r.message = m;
                    }
                })
                .await;
            Err(Status::unknown(message))
        }
    }
}
