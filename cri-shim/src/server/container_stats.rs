//! ContainerStats and ListContainerStats: each container's cgroup (while it runs) and writable
//! layer, measured by [`crate::stats`] on the blocking pool.
//!
//! As containerd: a container that is not running has no CPU or memory block, only its writable
//! layer; `fs_id` is the image filesystem ImageFsInfo reports; `swap` is not sent (containerd
//! never fills it); a container that goes away between the listing and the reading is left out
//! of a list, and is NotFound for ContainerStats.

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::filter::labels_match;
use super::Cri;
use crate::stats::{self, ContainerUsage, CpuUsage, FilesystemUsage, MemoryUsage};
use crate::store::{ContainerRecord, ContainerState};

pub(super) async fn container_stats(cri: &Cri, req: &v1::ContainerStatsRequest) -> Result<v1::ContainerStatsResponse, Status> {
    if req.container_id.is_empty() {
        return Err(Status::invalid_argument("container_id: empty"));
    }
    let record = cri.store.container(&req.container_id).map_err(|e| super::sandbox::store_status("ContainerStats", e))?;
    let mut stats = measure(cri, vec![record]).await?;
    match stats.pop() {
        Some(stats) => Ok(v1::ContainerStatsResponse { stats: Some(stats) }),
        None => Err(Status::not_found(format!("container {:?} not found", req.container_id))),
    }
}

pub(super) async fn list_container_stats(
    cri: &Cri,
    req: &v1::ListContainerStatsRequest,
) -> Result<v1::ListContainerStatsResponse, Status> {
    let filter = req.filter.clone().unwrap_or_default();
    let records: Vec<ContainerRecord> = cri
        .store
        .containers()
        .into_iter()
        .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
        .filter(|c| filter.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&filter.pod_sandbox_id))
        .filter(|c| labels_match(&filter.label_selector, &c.labels))
        .filter(|c| c.state != ContainerState::Creating)
        .collect();
    Ok(v1::ListContainerStatsResponse { stats: measure(cri, records).await? })
}

/// The stats of `records`, leaving out those gone meanwhile.
pub(super) async fn measure(cri: &Cri, records: Vec<ContainerRecord>) -> Result<Vec<v1::ContainerStats>, Status> {
    let usages = usages(cri, &records).await?;
    Ok(records.iter().zip(usages).filter_map(|(r, u)| u.map(|u| to_proto(r, &u))).collect())
}

/// Each container's usage, `None` for one that is gone.
pub(super) async fn usages(cri: &Cri, records: &[ContainerRecord]) -> Result<Vec<Option<ContainerUsage>>, Status> {
    let jobs: Vec<(String, Option<String>, std::path::PathBuf)> = records
        .iter()
        .map(|r| {
            let cgroup = (r.state == ContainerState::Running && !r.cgroups_path.is_empty()).then(|| r.cgroups_path.clone());
            let upper = libcontainer::image_bundle::snapshot_dir(cri.images.image_root().root(), &r.id).join("upper");
            (r.id.clone(), cgroup, upper)
        })
        .collect();
    let mountpoint = cri.images.image_root().root().to_owned();
    let sampler = cri.sampler.clone();
    tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|(id, cgroup, upper)| match stats::container_usage(&sampler, &id, cgroup.as_deref(), &upper, &mountpoint) {
                Ok(u) => Ok(Some(u)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(Status::internal(format!("container {id}: {e}"))),
            })
            .collect::<Result<Vec<_>, Status>>()
    })
    .await
    .map_err(|e| Status::internal(format!("measure containers: {e}")))?
}

pub(super) fn to_proto(r: &ContainerRecord, u: &ContainerUsage) -> v1::ContainerStats {
    v1::ContainerStats {
        attributes: Some(v1::ContainerAttributes {
            id: r.id.clone(),
            metadata: Some(v1::ContainerMetadata { name: r.metadata.name.clone(), attempt: r.metadata.attempt }),
            labels: r.labels.clone().into_iter().collect(),
            annotations: r.annotations.clone().into_iter().collect(),
        }),
        cpu: u.cgroup.as_ref().map(|c| cpu(&c.cpu)),
        memory: u.cgroup.as_ref().map(|c| memory(&c.memory)),
        writable_layer: Some(filesystem(&u.writable_layer)),
        swap: None,
        io: None,
    }
}

fn value(value: u64) -> Option<v1::UInt64Value> {
    Some(v1::UInt64Value { value })
}

pub(super) fn cpu(c: &CpuUsage) -> v1::CpuUsage {
    v1::CpuUsage {
        timestamp: c.timestamp,
        usage_core_nano_seconds: value(c.usage_core_nano_seconds),
        usage_nano_cores: c.usage_nano_cores.and_then(value),
        psi: None,
    }
}

pub(super) fn memory(m: &MemoryUsage) -> v1::MemoryUsage {
    v1::MemoryUsage {
        timestamp: m.timestamp,
        working_set_bytes: value(m.working_set_bytes),
        available_bytes: value(m.available_bytes),
        usage_bytes: value(m.usage_bytes),
        rss_bytes: value(m.rss_bytes),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
        psi: None,
    }
}

fn filesystem(f: &FilesystemUsage) -> v1::FilesystemUsage {
    v1::FilesystemUsage {
        timestamp: f.timestamp,
        fs_id: Some(v1::FilesystemIdentifier { mountpoint: f.mountpoint.to_string_lossy().into_owned() }),
        used_bytes: value(f.used_bytes),
        inodes_used: value(f.inodes_used),
    }
}
