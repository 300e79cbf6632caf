//! UpdatePodSandboxResources: kubelet tells the runtime the pod's new overhead and resources after
//! it resized the pod's cgroup itself (in-place pod resize). Like containerd 2.1 (1.6 does not
//! serve the RPC), roci-cri changes no cgroup here: it records them in the pod's stored config, so
//! PodSandboxStatus's verbose config and a restarted daemon see the pod as kubelet sized it. A
//! field left out of the request keeps its value.

use prost::Message;
use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::sandbox::store_status;
use super::Cri;
use crate::store::PodState;

pub(super) async fn update_pod_sandbox_resources(
    cri: &Cri,
    req: &v1::UpdatePodSandboxResourcesRequest,
) -> Result<v1::UpdatePodSandboxResourcesResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument("pod_sandbox_id: empty"));
    }
    let pod = cri.store.pod(&req.pod_sandbox_id).map_err(|e| store_status("UpdatePodSandboxResources", e))?;
    let _lock = cri.store.lock(&pod.id).await;
    let pod = cri.store.pod(&pod.id).map_err(|e| store_status("UpdatePodSandboxResources", e))?;
    if pod.state == PodState::Creating {
        return Err(Status::failed_precondition(format!("pod sandbox {} is still being created", pod.id)));
    }
    let mut config = v1::PodSandboxConfig::decode(pod.config.as_slice())
        .map_err(|e| Status::internal(format!("pod sandbox {}: its stored config: {e}", pod.id)))?;
    let linux = config.linux.get_or_insert_with(Default::default);
    if let Some(overhead) = &req.overhead {
        linux.overhead = Some(overhead.clone());
    }
    if let Some(resources) = &req.resources {
        linux.resources = Some(resources.clone());
    }
    let bytes = config.encode_to_vec();
    let store = cri.store.clone();
    let id = pod.id.clone();
    tokio::task::spawn_blocking(move || store.update_pod(&id, |r| r.config = bytes))
        .await
        .map_err(|e| Status::internal(format!("UpdatePodSandboxResources: {e}")))?
        .map_err(|e| store_status("UpdatePodSandboxResources", e))?;
    tracing::info!(pod_id = %pod.id, "pod resources recorded");
    Ok(v1::UpdatePodSandboxResourcesResponse {})
}
