//! PodSandboxStats and ListPodSandboxStats: the pod's cgroup (its `cgroup_parent`, as containerd
//! reads it), its network namespace's interfaces, the process count of its running containers and
//! their own stats.
//!
//! Only ready pods are measured: PodSandboxStats of a pod that is not ready fails with Unknown
//! (containerd 1.6's code for it), a list leaves such pods out (containerd 1.7; 1.6 fails the
//! whole list); a pod without `cgroup_parent` cannot be measured
//! (FailedPrecondition: containerd fails it too).

use prost::Message;
use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::container_stats::{cpu, memory, to_proto, usages};
use super::filter::labels_match;
use super::Cri;
use crate::stats::{self, InterfaceUsage, NetworkUsage};
use crate::store::{ContainerState, PodRecord, PodState};

pub(super) async fn pod_sandbox_stats(
    cri: &Cri,
    req: &v1::PodSandboxStatsRequest,
) -> Result<v1::PodSandboxStatsResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument("pod_sandbox_id: empty"));
    }
    let pod = cri.store.pod(&req.pod_sandbox_id).map_err(|e| super::sandbox::store_status("PodSandboxStats", e))?;
    if pod.state != PodState::Ready {
        return Err(Status::unknown(format!("PodSandboxStats: pod sandbox {} is not ready: no stats", pod.id)));
    }
    Ok(v1::PodSandboxStatsResponse { stats: Some(measure(cri, &pod).await?) })
}

pub(super) async fn list_pod_sandbox_stats(
    cri: &Cri,
    req: &v1::ListPodSandboxStatsRequest,
) -> Result<v1::ListPodSandboxStatsResponse, Status> {
    let filter = req.filter.clone().unwrap_or_default();
    let mut out = Vec::new();
    for pod in cri.store.pods() {
        if pod.state != PodState::Ready
            || !(filter.id.is_empty() || pod.id.starts_with(&filter.id))
            || !labels_match(&filter.label_selector, &pod.labels)
        {
            continue;
        }
        match measure(cri, &pod).await {
            Ok(stats) => out.push(stats),
            // Stopped or removed meanwhile.
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(v1::ListPodSandboxStatsResponse { stats: out })
}

async fn measure(cri: &Cri, pod: &PodRecord) -> Result<v1::PodSandboxStats, Status> {
    let config = v1::PodSandboxConfig::decode(pod.config.as_slice())
        .map_err(|e| Status::internal(format!("pod sandbox {}: its stored config: {e}", pod.id)))?;
    let cgroup_parent = config.linux.as_ref().map(|l| l.cgroup_parent.clone()).unwrap_or_default();
    if cgroup_parent.is_empty() {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {}: no linux.cgroup_parent to measure (kubelet always gives one)",
            pod.id
        )));
    }
    let containers: Vec<_> =
        cri.store.containers().into_iter().filter(|c| c.pod_id == pod.id && c.state == ContainerState::Running).collect();
    let usages = usages(cri, &containers).await?;
    let measured: Vec<_> = containers.iter().zip(usages).filter_map(|(r, u)| u.map(|u| (r, u))).collect();
    let running: Vec<_> = measured.iter().map(|(_, u)| u.clone()).collect();
    let (sampler, id, netns) = (cri.sampler.clone(), pod.id.clone(), pod.netns.clone());
    let usage = tokio::task::spawn_blocking(move || stats::pod_usage(&sampler, &id, &cgroup_parent, netns.as_deref(), &running))
        .await
        .map_err(|e| Status::internal(format!("measure pod sandbox {}: {e}", pod.id)))?
        .map_err(|e| {
            let message = format!("pod sandbox {}: {e}", pod.id);
            if e.is_not_found() {
                Status::not_found(message)
            } else {
                Status::internal(message)
            }
        })?;
    let meta = &pod.metadata;
    Ok(v1::PodSandboxStats {
        attributes: Some(v1::PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: Some(v1::PodSandboxMetadata {
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                namespace: meta.namespace.clone(),
                attempt: meta.attempt,
            }),
            labels: pod.labels.clone().into_iter().collect(),
            annotations: pod.annotations.clone().into_iter().collect(),
        }),
        linux: Some(v1::LinuxPodSandboxStats {
            cpu: Some(cpu(&usage.cgroup.cpu)),
            memory: Some(memory(&usage.cgroup.memory)),
            network: usage.network.as_ref().map(network),
            process: Some(v1::ProcessUsage {
                timestamp: usage.process.timestamp,
                process_count: Some(v1::UInt64Value { value: usage.process.process_count }),
            }),
            containers: measured.iter().map(|(r, u)| to_proto(r, u)).collect(),
            io: None,
        }),
        windows: None,
    })
}

fn network(n: &NetworkUsage) -> v1::NetworkUsage {
    v1::NetworkUsage {
        timestamp: n.timestamp,
        default_interface: n.default_interface.as_ref().map(interface),
        interfaces: n.interfaces.iter().map(interface).collect(),
    }
}

fn interface(i: &InterfaceUsage) -> v1::NetworkInterfaceUsage {
    let value = |value| Some(v1::UInt64Value { value });
    v1::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    }
}
