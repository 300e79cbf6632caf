//! PodSandboxStatus: the state (NotReady once the pause has exited, whatever the record says),
//! created_at, the network (the pod's IPs while its netns is pinned; none with host network, as
//! containerd), the namespace options of the request, labels, annotations, metadata, runtime
//! handler; with `verbose`, `info["info"]` as JSON with containerd's keys where they apply: pid,
//! processStatus, netNamespaceClosed, image, runtimeHandler, runtimeType, config, runtimeSpec,
//! cniResult. `containers_statuses` holds the statuses of the pod's containers (containerd 1.7+
//! fills it for kubelet's evented PLEG; 1.6 leaves it empty).

use std::collections::HashMap;
use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};
use tonic::Status;

use super::container_status::statuses_of_pod;
use super::sandbox::{self, now_nanos, store_status, InitState, Sandbox};
use super::Cri;
use crate::network::netns;
use crate::store::{PodRecord, PodState};

const RPC: &str = "PodSandboxStatus";

pub(super) async fn pod_sandbox_status(
    cri: &Arc<Cri>,
    request: &v1::PodSandboxStatusRequest,
) -> Result<v1::PodSandboxStatusResponse, Status> {
    let record = cri.store.pod(&request.pod_sandbox_id).map_err(|e| store_status(RPC, e))?;
    if record.state == PodState::Creating {
        return Err(Status::not_found(format!("{RPC}: pod sandbox {:?} not found (it is being created)", record.id)));
    }
    let (status, pod, pause) = status_of(cri, record).await?;
    let netns_open = pod.record.netns.as_deref().is_some_and(netns::is_pinned);
    let mut info = HashMap::new();
    if request.verbose {
        // As containerd: a pod without a netns of its own (host network) has none to close.
        let netns_closed = pod.record.netns.is_some() && !netns_open;
        info.insert("info".to_owned(), verbose_info(cri, &pod, &pause, netns_closed).await.to_string());
    }
    let containers_statuses = statuses_of_pod(cri, pod.id()).await;
    Ok(v1::PodSandboxStatusResponse { status: Some(status), info, containers_statuses, timestamp: now_nanos() })
}

/// Pod `record`'s status (its state from the pause's), with the pod decoded and the pause's state.
pub(super) async fn status_of(cri: &Arc<Cri>, record: PodRecord) -> Result<(v1::PodSandboxStatus, Sandbox, InitState), Status> {
    let pod = Sandbox::of(record)?;
    let pause = sandbox::pause_state(&cri.layout, &pod.record).await;
    let state = state_of(&pod.record, &pause);
    let netns_open = pod.record.netns.as_deref().is_some_and(netns::is_pinned);
    let network = if netns_open && !pod.host_network() {
        let mut ips = pod.record.ips.iter();
        Some(v1::PodSandboxNetworkStatus {
            ip: ips.next().cloned().unwrap_or_default(),
            additional_ips: ips.map(|ip| v1::PodIp { ip: ip.clone() }).collect(),
        })
    } else {
        Some(v1::PodSandboxNetworkStatus::default())
    };
    let status = v1::PodSandboxStatus {
        id: pod.id().to_owned(),
        metadata: pod.config.metadata.clone(),
        state: state as i32,
        created_at: pod.record.created_at,
        network,
        linux: Some(v1::LinuxPodSandboxStatus { namespaces: Some(v1::Namespace { options: Some(pod.namespace_options()) }) }),
        labels: pod.config.labels.clone(),
        annotations: pod.config.annotations.clone(),
        runtime_handler: pod.record.runtime_handler.clone(),
    };
    Ok((status, pod, pause))
}

/// Ready while the record is and the pause runs.
pub(super) fn state_of(record: &PodRecord, pause: &InitState) -> v1::PodSandboxState {
    if record.state == PodState::Ready && pause.running() {
        v1::PodSandboxState::SandboxReady
    } else {
        v1::PodSandboxState::SandboxNotready
    }
}

async fn verbose_info(cri: &Cri, pod: &Sandbox, pause: &InitState, netns_closed: bool) -> Value {
    let bundle = cri.images.image_root().bundle_path(pod.id());
    let runtime_spec = tokio::fs::read(bundle.join("config.json"))
        .await
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
        .unwrap_or(Value::Null);
    let cni_result = match cri.networks.status(pod.id()) {
        Ok(Some(net)) => serde_json::to_value(&net.result).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    json!({
        // As containerd: the pid of a running pause, 0 once it has exited.
        "pid": if pause.running() { pod.record.pid } else { 0 },
        "processStatus": pause.as_str(),
        "netNamespaceClosed": netns_closed,
        "image": pod.record.image,
        "runtimeHandler": pod.record.runtime_handler,
        "runtimeType": "roci",
        "config": config_json(&pod.config),
        "runtimeSpec": runtime_spec,
        "cniResult": cni_result,
    })
}

/// The PodSandboxConfig as JSON with the protobuf field names (what containerd prints).
fn config_json(c: &v1::PodSandboxConfig) -> Value {
    let meta = c.metadata.clone().unwrap_or_default();
    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let mode = |v: i32| v1::NamespaceMode::try_from(v).map(|m| m.as_str_name()).unwrap_or("UNKNOWN");
    json!({
        "metadata": { "name": meta.name, "uid": meta.uid, "namespace": meta.namespace, "attempt": meta.attempt },
        "hostname": c.hostname,
        "log_directory": c.log_directory,
        "dns_config": c.dns_config.as_ref().map(|d| json!({ "servers": d.servers, "searches": d.searches, "options": d.options })),
        "port_mappings": c.port_mappings.iter().map(|p| json!({
            "protocol": v1::Protocol::try_from(p.protocol).map(|p| p.as_str_name()).unwrap_or("UNKNOWN"),
            "container_port": p.container_port,
            "host_port": p.host_port,
            "host_ip": p.host_ip,
        })).collect::<Vec<_>>(),
        "labels": c.labels,
        "annotations": c.annotations,
        "linux": {
            "cgroup_parent": linux.cgroup_parent,
            "sysctls": linux.sysctls,
            "overhead": linux.overhead.as_ref().map(resources_json),
            "resources": linux.resources.as_ref().map(resources_json),
            "security_context": {
                "namespace_options": { "network": mode(ns.network), "pid": mode(ns.pid), "ipc": mode(ns.ipc), "target_id": ns.target_id },
                "privileged": sc.privileged,
                "readonly_rootfs": sc.readonly_rootfs,
                "run_as_user": sc.run_as_user.map(|u| u.value),
                "run_as_group": sc.run_as_group.map(|g| g.value),
                "supplemental_groups": sc.supplemental_groups,
            },
        },
    })
}

/// LinuxContainerResources as JSON with the protobuf field names.
fn resources_json(r: &v1::LinuxContainerResources) -> Value {
    json!({
        "cpu_period": r.cpu_period,
        "cpu_quota": r.cpu_quota,
        "cpu_shares": r.cpu_shares,
        "memory_limit_in_bytes": r.memory_limit_in_bytes,
        "oom_score_adj": r.oom_score_adj,
        "cpuset_cpus": r.cpuset_cpus,
        "cpuset_mems": r.cpuset_mems,
        "memory_swap_limit_in_bytes": r.memory_swap_limit_in_bytes,
        "hugepage_limits": r.hugepage_limits.iter().map(|h| json!({ "page_size": h.page_size, "limit": h.limit })).collect::<Vec<_>>(),
        "unified": r.unified,
    })
}
