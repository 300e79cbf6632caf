//! RemovePodSandbox: a pod that is not stopped is stopped first (containerd 1.6 stops it
//! forcibly too); then its containers (the container RPCs' step, see [`remove`]), the pause
//! container (`roci delete --force`), its root filesystem, the network (again: nothing is left of
//! it), the pod's directory and the record, which releases the name. An unknown id is done
//! already (containerd 1.6 answers it without error).

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::sandbox::{self, blocking, store_status, Sandbox};
use super::stop_pod_sandbox::stop;
use super::Cri;
use crate::events::EventKind;
use crate::store::{self, ChangeError, PodState, Rollback, StoreError};

const RPC: &str = "RemovePodSandbox";

pub(super) async fn remove_pod_sandbox(
    cri: &Arc<Cri>,
    request: &v1::RemovePodSandboxRequest,
) -> Result<v1::RemovePodSandboxResponse, Status> {
    let pod = match cri.store.pod(&request.pod_sandbox_id) {
        Ok(pod) => pod,
        Err(StoreError::NotFound { .. }) => return Ok(v1::RemovePodSandboxResponse {}),
        Err(e) => return Err(store_status(RPC, e)),
    };
    if pod.state == PodState::Creating {
        return Err(Status::failed_precondition(format!("{RPC}: pod sandbox {} is being created", pod.id)));
    }
    let guard = cri.store.lock(&pod.id).await;
    let (cri, id) = (cri.clone(), pod.id);
    let work = async move {
        let _guard = guard;
        remove(&cri, &id).await
    };
    store::change(Rollback::new(format!("remove pod sandbox {}", request.pod_sandbox_id)), work).await.map_err(|e| match e {
        ChangeError::Failed { source, .. } => source,
        e @ ChangeError::Interrupted { .. } => Status::internal(format!("{RPC}: {e}")),
    })?;
    Ok(v1::RemovePodSandboxResponse {})
}

/// Remove pod `id` (its lifecycle lock held by the caller); a pod removed meanwhile is done.
pub(super) async fn remove(cri: &Arc<Cri>, id: &str) -> Result<(), Status> {
    let record = match cri.store.pod(id) {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(store_status(RPC, e)),
    };
    if record.state != PodState::NotReady || sandbox::pause_state(&cri.layout, &record).await.running() {
        stop(cri, id).await?;
    }
    // Every container of the pod first (containerd 1.6's RemovePodSandbox).
    cri.containers.remove_all_of_pod(id).await.map_err(|e| super::containers::lifecycle_status(RPC, e))?;
    release(cri, &Sandbox::of(record)?).await.map_err(|e| Status::internal(format!("{RPC}: pod sandbox {id}: {e}")))?;
    let store = cri.store.clone();
    let key = id.to_owned();
    blocking(RPC, move || store.remove_pod(&key)).await?;
    cri.sampler.forget(id);
    cri.events.emit(id, id, EventKind::Deleted);
    Ok(())
}

/// Everything the pod has on the host but its record: the pause container, its root
/// filesystem, the network, the pod's directory. Each step tolerates what is gone; used by
/// remove and by recovery.
pub(super) async fn release(cri: &Arc<Cri>, pod: &Sandbox) -> Result<(), String> {
    let id = pod.id().to_owned();
    sandbox::roci_delete(cri, &id).await.map_err(|e| format!("roci delete --force: {e}"))?;
    let root = cri.images.image_root().clone();
    let bundle_id = id.clone();
    tokio::task::spawn_blocking(move || root.remove_bundle(&bundle_id))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("remove the pause's root filesystem: {e}"))?;
    // A pod stopped cleanly has no network left: no second DEL (containerd does none either).
    if !pod.host_network() && cri.networks.has_remains(&id) {
        let request = pod.network_request().map_err(|e| e.message().to_owned())?;
        cri.networks.teardown(&request).await.map_err(|e| format!("tear down the network: {e}"))?;
    }
    sandbox::unmount(&cri.layout.pod_shm(&id))?;
    sandbox::remove_dir(&cri.layout.pod_dir(&id))
}
