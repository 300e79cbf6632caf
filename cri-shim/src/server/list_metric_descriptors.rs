//! ListMetricDescriptors: the one table of the cAdvisor-named metrics roci-cri sends from
//! ListPodSandboxMetrics (kubelet's `/metrics/cadvisor` with PodAndContainerStatsFromCRI). Every
//! metric sent is built from an entry here ([`metric`]), so each has a descriptor and as many
//! label values as its descriptor has label keys.
//!
//! Label keys: `id` and `name` first (containerd 2.2's base keys; CRI-O adds `image`): the
//! container's id and name, or for a pod-level metric the pod's. kubelet adds `namespace`, `pod`
//! and `container` itself (newer kubelets append them to every descriptor), so they are not
//! among the runtime's keys. A network metric adds `interface`, a filesystem one `device`.
//! Where containerd 2.2 differs: its metrics carry more label values than its descriptors have
//! keys (container name, pod name, namespace, id for the keys `id`, `name`), which kubelet
//! cannot turn into Prometheus samples; here the two line up.
//!
//! Values are whole units, as the wire's `UInt64Value` holds them: CPU in whole seconds
//! (truncated, as containerd and CRI-O), memory and filesystem in bytes.

use roci_cri_proto::runtime_v1 as v1;

/// The label keys every metric starts with.
pub(super) const BASE_LABEL_KEYS: [&str; 2] = ["id", "name"];

/// One metric's descriptor: its name, help, the label keys after [`BASE_LABEL_KEYS`], its type.
#[derive(Debug)]
pub(super) struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub extra_label_keys: &'static [&'static str],
    pub kind: v1::MetricType,
}

const fn counter(name: &'static str, help: &'static str, extra_label_keys: &'static [&'static str]) -> Descriptor {
    Descriptor { name, help, extra_label_keys, kind: v1::MetricType::Counter }
}

const fn gauge(name: &'static str, help: &'static str, extra_label_keys: &'static [&'static str]) -> Descriptor {
    Descriptor { name, help, extra_label_keys, kind: v1::MetricType::Gauge }
}

const INTERFACE: &[&str] = &["interface"];
const DEVICE: &[&str] = &["device"];

pub(super) const CPU_USAGE: Descriptor =
    counter("container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", &[]);
pub(super) const CPU_USER: Descriptor =
    counter("container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", &[]);
pub(super) const CPU_SYSTEM: Descriptor =
    counter("container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", &[]);
pub(super) const MEMORY_USAGE: Descriptor = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
    &[],
);
pub(super) const MEMORY_WORKING_SET: Descriptor =
    gauge("container_memory_working_set_bytes", "Current working set in bytes.", &[]);
pub(super) const MEMORY_RSS: Descriptor = gauge("container_memory_rss", "Size of RSS in bytes.", &[]);
pub(super) const MEMORY_CACHE: Descriptor = gauge("container_memory_cache", "Number of bytes of page cache memory.", &[]);
pub(super) const MEMORY_SWAP: Descriptor = gauge("container_memory_swap", "Container swap usage in bytes.", &[]);
pub(super) const MEMORY_FAILCNT: Descriptor =
    counter("container_memory_failcnt", "Number of times container memory usage has hit its limit (cgroup v1 only).", &[]);
pub(super) const PROCESSES: Descriptor = gauge("container_processes", "Number of processes running inside the container.", &[]);
pub(super) const FS_USAGE: Descriptor =
    gauge("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", DEVICE);
pub(super) const START_TIME: Descriptor =
    gauge("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", &[]);
pub(super) const NET_RX_BYTES: Descriptor =
    counter("container_network_receive_bytes_total", "Cumulative count of bytes received.", INTERFACE);
pub(super) const NET_RX_PACKETS: Descriptor =
    counter("container_network_receive_packets_total", "Cumulative count of packets received.", INTERFACE);
pub(super) const NET_RX_DROPPED: Descriptor =
    counter("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", INTERFACE);
pub(super) const NET_RX_ERRORS: Descriptor =
    counter("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", INTERFACE);
pub(super) const NET_TX_BYTES: Descriptor =
    counter("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", INTERFACE);
pub(super) const NET_TX_PACKETS: Descriptor =
    counter("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", INTERFACE);
pub(super) const NET_TX_DROPPED: Descriptor = counter(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting.",
    INTERFACE,
);
pub(super) const NET_TX_ERRORS: Descriptor =
    counter("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", INTERFACE);

/// Every metric ListPodSandboxMetrics may send.
pub(super) const DESCRIPTORS: &[&Descriptor] = &[
    &CPU_USAGE,
    &CPU_USER,
    &CPU_SYSTEM,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_CACHE,
    &MEMORY_SWAP,
    &MEMORY_FAILCNT,
    &PROCESSES,
    &FS_USAGE,
    &START_TIME,
    &NET_RX_BYTES,
    &NET_RX_PACKETS,
    &NET_RX_DROPPED,
    &NET_RX_ERRORS,
    &NET_TX_BYTES,
    &NET_TX_PACKETS,
    &NET_TX_DROPPED,
    &NET_TX_ERRORS,
];

impl Descriptor {
    fn to_proto(&self) -> v1::MetricDescriptor {
        v1::MetricDescriptor {
            name: self.name.to_owned(),
            help: self.help.to_owned(),
            label_keys: BASE_LABEL_KEYS.iter().chain(self.extra_label_keys).map(|k| (*k).to_owned()).collect(),
        }
    }
}

/// The id and name (of a container, or of a pod) a metric is labelled with.
pub(super) struct Subject<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

/// The metric `d` of `subject` read at `timestamp`, with `extra` the values of `d`'s extra label
/// keys, in order. A mismatch in their number is a bug of the caller (checked by the unit tests,
/// which build every metric through here).
pub(super) fn metric(d: &Descriptor, subject: &Subject<'_>, extra: &[&str], timestamp: i64, value: u64) -> v1::Metric {
    debug_assert_eq!(extra.len(), d.extra_label_keys.len(), "label values of {}", d.name);
    v1::Metric {
        name: d.name.to_owned(),
        timestamp,
        metric_type: d.kind as i32,
        label_values: [subject.id, subject.name].into_iter().chain(extra.iter().copied()).map(str::to_owned).collect(),
        value: Some(v1::UInt64Value { value }),
    }
}

pub(super) fn list_metric_descriptors() -> v1::ListMetricDescriptorsResponse {
    v1::ListMetricDescriptorsResponse { descriptors: DESCRIPTORS.iter().map(|d| d.to_proto()).collect() }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_cadvisor_shaped() {
        let list = list_metric_descriptors().descriptors;
        assert_eq!(list.len(), DESCRIPTORS.len());
        let names: HashSet<&str> = list.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), list.len(), "duplicate names");
        for d in &list {
            assert!(d.name.starts_with("container_") && !d.help.is_empty(), "{d:?}");
            assert_eq!(d.label_keys[..2], ["id", "name"], "{d:?}");
            let keys: HashSet<&String> = d.label_keys.iter().collect();
            assert_eq!(keys.len(), d.label_keys.len(), "duplicate label keys: {d:?}");
            for k in ["namespace", "pod", "container"] {
                assert!(!keys.contains(&k.to_owned()), "kubelet adds {k} itself: {d:?}");
            }
            let counter = d.name.ends_with("_total") || d.name == "container_memory_failcnt";
            let kind = DESCRIPTORS.iter().find(|t| t.name == d.name).unwrap().kind;
            assert_eq!(kind == v1::MetricType::Counter, counter, "{d:?}");
        }
    }

    #[test]
    fn metrics_carry_their_labels_in_order() {
        let m = metric(&NET_RX_BYTES, &Subject { id: "p1", name: "web" }, &["eth0"], 7, 42);
        assert_eq!(m.label_values, ["p1", "web", "eth0"]);
        assert_eq!((m.timestamp, m.metric_type, m.value.map(|v| v.value)), (7, v1::MetricType::Counter as i32, Some(42)));
    }
}
