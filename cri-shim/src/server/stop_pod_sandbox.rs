//! StopPodSandbox: the pod's containers first (the container RPCs' step, see [`stop`]), then the
//! pause container (SIGKILL through its pidfd, the monitor's exit record awaited), CNI DEL and the
//! pinned netns removed, the pod's `/dev/shm` unmounted; the record `NotReady`. Idempotent: a
//! stopped pod is stopped again without error. An unknown id is NotFound, as containerd 1.6
//! answers it.

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::sandbox::{self, blocking, store_status, Sandbox};
use super::Cri;
use crate::events::EventKind;
use crate::store::{self, ChangeError, PodState, Rollback};

const RPC: &str = "StopPodSandbox";

pub(super) async fn stop_pod_sandbox(
    cri: &Arc<Cri>,
    request: &v1::StopPodSandboxRequest,
) -> Result<v1::StopPodSandboxResponse, Status> {
    let pod = cri.store.pod(&request.pod_sandbox_id).map_err(|e| store_status(RPC, e))?;
    if pod.state == PodState::Creating {
        return Err(Status::not_found(format!("{RPC}: pod sandbox {:?} not found (it is being created)", pod.id)));
    }
    let guard = cri.store.lock(&pod.id).await;
    let (cri, id) = (cri.clone(), pod.id);
    // On a task of its own: a client that gives up does not cut a stop in half.
    let work = async move {
        let _guard = guard;
        stop(&cri, &id).await
    };
    store::change(Rollback::new(format!("stop pod sandbox {}", request.pod_sandbox_id)), work).await.map_err(|e| match e {
        ChangeError::Failed { source, .. } => source,
        e @ ChangeError::Interrupted { .. } => Status::internal(format!("{RPC}: {e}")),
    })?;
    Ok(v1::StopPodSandboxResponse {})
}

/// Stop pod `id` (its lifecycle lock held by the caller). Every step can be repeated, so a stop
/// that failed half-way is finished by the next.
pub(super) async fn stop(cri: &Arc<Cri>, id: &str) -> Result<(), Status> {
    let pod = Sandbox::of(cri.store.pod(id).map_err(|e| store_status(RPC, e))?)?;
    // Every container of the pod first, at once (containerd 1.6's StopPodSandbox).
    cri.containers.stop_all_of_pod(id).await.map_err(|e| super::containers::lifecycle_status(RPC, e))?;
    sandbox::stop_pause(cri, &pod.record).await?;
    if !pod.host_network() {
        let request = pod.network_request()?;
        cri.networks
            .teardown(&request)
            .await
            .map_err(|e| Status::unknown(format!("{RPC}: tear down the network of pod sandbox {id}: {e}")))?;
    }
    sandbox::unmount(&cri.layout.pod_shm(id)).map_err(|e| Status::internal(format!("{RPC}: pod sandbox {id}: {e}")))?;
    let store = cri.store.clone();
    let id = id.to_owned();
    let was = pod.record.state;
    blocking(RPC, move || store.update_pod(&id, |r| r.state = PodState::NotReady)).await?;
    if was != PodState::NotReady {
        cri.events.emit(&pod.record.id, &pod.record.id, EventKind::Stopped);
    }
    Ok(())
}
