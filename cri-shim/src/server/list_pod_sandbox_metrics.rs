//! ListPodSandboxMetrics: cAdvisor-named metrics per ready pod and per container in it, from the
//! same measurements as the stats RPCs ([`crate::stats`]), named by the table in
//! [`super::list_metric_descriptors`].
//!
//! As containerd 2.2: only ready pods; the pod's own metrics are its network interfaces (the
//! pinned network namespace, every interface but `lo`), each container's are its cgroup (while it
//! runs), its writable layer and its start time. A number the host does not keep (failcnt on
//! cgroup v2, swap without swap accounting, page cache without the key) is left out, never sent as
//! 0; a container or pod gone between listing and reading is left out.

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::container_stats::usages;
use super::list_metric_descriptors::{self as table, metric, Subject};
use super::Cri;
use crate::stats::{self, ContainerUsage, NetworkUsage};
use crate::store::{ContainerState, PodRecord, PodState};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

pub(super) async fn list_pod_sandbox_metrics(
    cri: &Cri,
    _: &v1::ListPodSandboxMetricsRequest,
) -> Result<v1::ListPodSandboxMetricsResponse, Status> {
    let mut pod_metrics = Vec::new();
    for pod in cri.store.pods().into_iter().filter(|p| p.state == PodState::Ready) {
        if let Some(m) = measure(cri, &pod).await? {
            pod_metrics.push(m);
        }
    }
    Ok(v1::ListPodSandboxMetricsResponse { pod_metrics })
}

/// The metrics of `pod`, `None` when it went away meanwhile.
async fn measure(cri: &Cri, pod: &PodRecord) -> Result<Option<v1::PodSandboxMetrics>, Status> {
    let network = match pod.netns.clone() {
        None => None,
        Some(netns) => match tokio::task::spawn_blocking(move || stats::read_network(&netns))
            .await
            .map_err(|e| Status::internal(format!("measure the network of pod sandbox {}: {e}", pod.id)))?
        {
            Ok(n) => Some(n),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(Status::internal(format!("pod sandbox {}: {e}", pod.id))),
        },
    };
    let containers: Vec<_> =
        cri.store.containers().into_iter().filter(|c| c.pod_id == pod.id && c.state != ContainerState::Creating).collect();
    let usages = usages(cri, &containers).await?;
    let container_metrics = containers
        .iter()
        .zip(usages)
        .filter_map(|(r, u)| {
            let started = (r.state == ContainerState::Running).then_some(r.started_at);
            u.map(|u| container_metrics(&Subject { id: &r.id, name: &r.metadata.name }, started, &u))
        })
        .collect();
    let subject = Subject { id: &pod.id, name: &pod.metadata.name };
    Ok(Some(v1::PodSandboxMetrics {
        pod_sandbox_id: pod.id.clone(),
        metrics: network.as_ref().map(|n| network_metrics(&subject, n)).unwrap_or_default(),
        container_metrics,
    }))
}

/// One metric per interface and counter.
fn network_metrics(pod: &Subject<'_>, n: &NetworkUsage) -> Vec<v1::Metric> {
    let mut out = Vec::new();
    for i in &n.interfaces {
        for (d, value) in [
            (&table::NET_RX_BYTES, i.rx_bytes),
            (&table::NET_RX_PACKETS, i.rx_packets),
            (&table::NET_RX_DROPPED, i.rx_dropped),
            (&table::NET_RX_ERRORS, i.rx_errors),
            (&table::NET_TX_BYTES, i.tx_bytes),
            (&table::NET_TX_PACKETS, i.tx_packets),
            (&table::NET_TX_DROPPED, i.tx_dropped),
            (&table::NET_TX_ERRORS, i.tx_errors),
        ] {
            out.push(metric(d, pod, &[&i.name], n.timestamp, value));
        }
    }
    out
}

/// A container's metrics: its cgroup's when it runs (`started_at`: its start time then, in
/// nanoseconds), its writable layer's always.
fn container_metrics(c: &Subject<'_>, started_at: Option<i64>, u: &ContainerUsage) -> v1::ContainerMetrics {
    let mut metrics = Vec::new();
    if let Some(g) = &u.cgroup {
        let t = g.cpu.timestamp;
        let seconds = |ns: u64| ns / NANOS_PER_SECOND;
        let present = [
            (&table::CPU_USAGE, Some(seconds(g.cpu.usage_core_nano_seconds))),
            (&table::CPU_USER, Some(seconds(g.detail.cpu_user_nano_seconds))),
            (&table::CPU_SYSTEM, Some(seconds(g.detail.cpu_system_nano_seconds))),
            (&table::MEMORY_USAGE, Some(g.memory.usage_bytes)),
            (&table::MEMORY_WORKING_SET, Some(g.memory.working_set_bytes)),
            (&table::MEMORY_RSS, Some(g.memory.rss_bytes)),
            (&table::MEMORY_CACHE, g.detail.cache_bytes),
            (&table::MEMORY_SWAP, g.swap.map(|s| s.swap_usage_bytes)),
            (&table::MEMORY_FAILCNT, g.detail.failcnt),
            (&table::PROCESSES, Some(g.process_count)),
            (&table::START_TIME, started_at.filter(|s| *s > 0).map(|s| s as u64 / NANOS_PER_SECOND)),
        ];
        metrics.extend(present.into_iter().filter_map(|(d, v)| v.map(|v| metric(d, c, &[], t, v))));
    }
    let fs = &u.writable_layer;
    let device = fs.mountpoint.to_string_lossy();
    metrics.push(metric(&table::FS_USAGE, c, &[&device], fs.timestamp, fs.used_bytes));
    v1::ContainerMetrics { container_id: c.id.to_owned(), metrics }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::stats::{CgroupDetail, CgroupUsage, CpuUsage, FilesystemUsage, InterfaceUsage, MemoryUsage, SwapUsage};

    fn usage(cgroup: bool) -> ContainerUsage {
        let cpu = CpuUsage { timestamp: 5, usage_core_nano_seconds: 3_500_000_000, usage_nano_cores: None };
        let memory = MemoryUsage {
            timestamp: 5,
            working_set_bytes: 700,
            available_bytes: 0,
            usage_bytes: 1000,
            rss_bytes: 600,
            page_faults: 1,
            major_page_faults: 0,
        };
        let detail = CgroupDetail {
            cpu_user_nano_seconds: 2_000_000_000,
            cpu_system_nano_seconds: 1_000_000_000,
            cache_bytes: Some(300),
            failcnt: Some(0),
        };
        let swap = Some(SwapUsage { timestamp: 5, swap_available_bytes: 0, swap_usage_bytes: 0 });
        ContainerUsage {
            cgroup: cgroup.then_some(CgroupUsage { cpu, memory, swap, process_count: 2, detail }),
            writable_layer: FilesystemUsage {
                timestamp: 6,
                mountpoint: PathBuf::from("/var/lib/roci-cri/images"),
                used_bytes: 4096,
                inodes_used: 3,
            },
        }
    }

    /// Each metric has a descriptor and one label value per label key.
    fn check(metrics: &[v1::Metric]) {
        let descriptors = table::list_metric_descriptors().descriptors;
        for m in metrics {
            let d = descriptors.iter().find(|d| d.name == m.name).unwrap_or_else(|| panic!("no descriptor: {m:?}"));
            assert_eq!(m.label_values.len(), d.label_keys.len(), "{m:?} vs {d:?}");
        }
    }

    fn value(metrics: &[v1::Metric], name: &str) -> Option<u64> {
        metrics.iter().find(|m| m.name == name).and_then(|m| m.value.map(|v| v.value))
    }

    #[test]
    fn a_running_container_sends_every_metric_its_host_keeps() {
        let c = container_metrics(&Subject { id: "c1", name: "app" }, Some(1_700_000_000_500_000_000), &usage(true));
        assert_eq!(c.container_id, "c1");
        check(&c.metrics);
        assert_eq!(c.metrics.len(), table::DESCRIPTORS.len() - 8, "all but the network ones");
        assert_eq!(value(&c.metrics, "container_cpu_usage_seconds_total"), Some(3), "truncated seconds");
        assert_eq!(value(&c.metrics, "container_cpu_user_seconds_total"), Some(2));
        assert_eq!(value(&c.metrics, "container_memory_working_set_bytes"), Some(700));
        assert_eq!(value(&c.metrics, "container_start_time_seconds"), Some(1_700_000_000));
        let fs = c.metrics.iter().find(|m| m.name == "container_fs_usage_bytes").unwrap();
        assert_eq!(fs.label_values, ["c1", "app", "/var/lib/roci-cri/images"]);
        assert!(c.metrics.iter().all(|m| m.label_values[..2] == ["c1", "app"]));
    }

    #[test]
    fn what_the_host_lacks_is_left_out_not_zero() {
        let mut u = usage(true);
        let g = u.cgroup.as_mut().unwrap();
        (g.swap, g.detail.failcnt, g.detail.cache_bytes) = (None, None, None);
        let c = container_metrics(&Subject { id: "c1", name: "app" }, None, &u);
        for gone in
            ["container_memory_swap", "container_memory_failcnt", "container_memory_cache", "container_start_time_seconds"]
        {
            assert_eq!(value(&c.metrics, gone), None, "{gone}");
        }
        // Not running: the writable layer only.
        let c = container_metrics(&Subject { id: "c1", name: "app" }, None, &usage(false));
        assert_eq!(c.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["container_fs_usage_bytes"]);
    }

    #[test]
    fn network_metrics_per_interface() {
        let eth0 = InterfaceUsage {
            name: "eth0".into(),
            rx_bytes: 10,
            rx_packets: 1,
            rx_errors: 0,
            rx_dropped: 0,
            tx_bytes: 20,
            tx_packets: 2,
            tx_errors: 0,
            tx_dropped: 0,
        };
        let net1 = InterfaceUsage { name: "net1".into(), ..eth0.clone() };
        let n = NetworkUsage { timestamp: 9, default_interface: Some(eth0.clone()), interfaces: vec![eth0, net1] };
        let m = network_metrics(&Subject { id: "p1", name: "web" }, &n);
        check(&m);
        assert_eq!(m.len(), 16);
        assert_eq!(m[0].label_values, ["p1", "web", "eth0"]);
        assert_eq!(m[8].label_values, ["p1", "web", "net1"]);
        assert_eq!(value(&m, "container_network_transmit_bytes_total"), Some(20));
    }
}
