//! The measurements behind the stats RPCs (ContainerStats, ListContainerStats, PodSandboxStats,
//! ListPodSandboxStats): plain structs shaped like runtime.v1's `ContainerStats` and
//! `LinuxPodSandboxStats`, filled the way containerd's CRI plugin fills them. No protobuf here:
//! the server turns these into its messages.
//!
//! Where the numbers come from, and the containerd rule each follows (containerd 1.6's
//! `pkg/cri/server/container_stats_list_linux.go` and `sandbox_stats_linux.go`; where a newer
//! containerd changed a rule, the newer one is said and followed):
//! - CPU and memory of a container: its cgroup, by the absolute OCI `cgroupsPath` of its spec, read
//!   through libcontainer's cgroup statistics (the ones `roci events` prints): v1 `cpuacct` and
//!   `memory` on v1/hybrid hosts, `cpu.stat` and `memory.*` on cgroup v2. Of a pod: the pod's
//!   cgroup, its `cgroup_parent` (containerd reads `linux.cgroup_parent` of the sandbox config).
//! - `usage_core_nano_seconds`: the cgroup's total CPU time (v1 `cpuacct.usage`, v2 `usage_usec`
//!   × 1000). `usage_nano_cores`: the rate since the previous sample of the same id
//!   ([`Sampler`]); none on the first one (containerd 1.7+; 1.6 sends 0 there).
//! - `working_set_bytes` = usage − inactive file pages, floored at 0 (v1: `total_inactive_file`
//!   of `memory.stat`, v2: `inactive_file`), as containerd and cAdvisor compute it;
//!   `available_bytes` = limit − working set when the cgroup has a limit (a limit above 2^62
//!   counts as none, as in containerd), else 0; `usage_bytes` the cgroup's usage;
//!   `rss_bytes` v1 `total_rss`, v2 `anon` (cAdvisor's choice on v2); `page_faults` and
//!   `major_page_faults` v1 `total_pgfault`/`total_pgmajfault`, v2 `pgfault`/`pgmajfault`.
//! - Swap (where the cgroup accounts it: v1 `memory.memsw.*`, v2 `memory.swap.*`): usage (v1
//!   `total_swap` of `memory.stat`, v2 `memory.swap.current`) and what is left of the swap
//!   limit. containerd (1.6 and newer) never fills ContainerStats' `swap`; CRI-O and kubelet's
//!   cAdvisor path do. Offered here; whether the server sends it is its call.
//! - Process count: the cgroup's `pids.current` (or its processes where no pids controller serves
//!   it), per container; a pod's is the sum over its running containers, as containerd counts
//!   it (so the pause process is not counted).
//! - Writable layer: blocks and inodes of the container's overlay upper directory, on its
//!   filesystem only, each inode once, as containerd's overlay snapshotter measures `Usage` (it
//!   does so every 10 s in the background; here on each call). `fs_id` names the image
//!   filesystem the way ImageFsInfo does: containerd reports its snapshotter root for both, so
//!   kubelet can match the two; the caller passes the same path (roci-cri's image root, which
//!   holds `snapshots/<id>/upper`).
//! - Network of a pod: `/proc/thread-self/net/dev` read from inside the pod's pinned network
//!   namespace (see `net.rs`), every interface but `lo`, the default one `eth0` (else the first),
//!   as containerd 2.x; 1.6 reports `eth0` alone.
//!
//! Every function here blocks (cgroup files, a directory walk, a thread in the pod's network
//! namespace): call them from async code in `spawn_blocking`.
//!
//! Not measured: the `psi` blocks of CPU, memory and `io` (containerd 2.x fills them from v2
//! `*.pressure` files; 1.6 has no such fields).

mod net;

#[cfg(test)]
mod host_tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libcontainer::cgroups::{self, CgroupPath, Stats, Version};

pub use net::{parse_net_dev, read_network, InterfaceUsage, NetworkUsage};

/// Errors of the measurements, each naming what was read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The cgroup could not be read (gone, not a cgroup path, a file the kernel lacks). A
    /// missing directory is [`StatsError::is_not_found`].
    #[error("read the statistics of cgroup {path}: {source}")]
    Cgroup { path: String, source: cgroups::Error },
    #[error("measure the writable layer {path}: {source}")]
    Layer { path: PathBuf, source: std::io::Error },
    #[error("read the network statistics of {netns}: {op}: {source}")]
    Netns { netns: PathBuf, op: &'static str, source: std::io::Error },
    #[error("read the network statistics of {netns}: the reading thread panicked")]
    NetnsThread { netns: PathBuf },
    #[error("parse /proc/net/dev of {netns} line {line}: {reason}")]
    NetDev { netns: PathBuf, line: usize, reason: String },
}

impl StatsError {
    /// Whether the thing measured is not there (a cgroup, upper directory or network namespace
    /// removed meanwhile): a container that stopped between listing and reading.
    pub fn is_not_found(&self) -> bool {
        let io = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        match self {
            StatsError::Cgroup { source: cgroups::Error::Read { source, .. }, .. } => io(source),
            StatsError::Layer { source, .. } | StatsError::Netns { source, .. } => io(source),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StatsError>;

/// runtime.v1 `CpuUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuUsage {
    /// When the cgroup was read, in nanoseconds since the epoch.
    pub timestamp: i64,
    pub usage_core_nano_seconds: u64,
    /// `None` until a second sample of the same id (see [`Sampler`]).
    pub usage_nano_cores: Option<u64>,
}

/// runtime.v1 `MemoryUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    pub timestamp: i64,
    pub working_set_bytes: u64,
    /// Limit − working set; 0 without a limit (containerd sends 0 too).
    pub available_bytes: u64,
    pub usage_bytes: u64,
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// runtime.v1 `SwapUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapUsage {
    pub timestamp: i64,
    /// Swap-only limit − swap usage; 0 without a swap limit.
    pub swap_available_bytes: u64,
    pub swap_usage_bytes: u64,
}

/// runtime.v1 `FilesystemUsage` of a container's writable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemUsage {
    pub timestamp: i64,
    /// `fs_id.mountpoint`.
    pub mountpoint: PathBuf,
    /// Blocks allocated, in bytes.
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// What one cgroup (a container's, or a pod's) tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupUsage {
    pub cpu: CpuUsage,
    pub memory: MemoryUsage,
    /// `None` where the cgroup has no swap accounting.
    pub swap: Option<SwapUsage>,
    /// Processes in the cgroup and below.
    pub process_count: u64,
    /// What the metrics RPCs send besides the CRI stats blocks.
    pub detail: CgroupDetail,
}

/// The cgroup numbers only the metrics RPCs (cAdvisor-named metrics) send. A number the host does
/// not keep is `None`, never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupDetail {
    /// CPU time in user and in kernel mode, nanoseconds (v1 `cpuacct.stat`, v2 `user_usec`,
    /// `system_usec`, as libcontainer reads them).
    pub cpu_user_nano_seconds: u64,
    pub cpu_system_nano_seconds: u64,
    /// Page cache: v1 `total_cache`, v2 `file` of `memory.stat`.
    pub cache_bytes: Option<u64>,
    /// Times the memory limit was hit: v1 `memory.failcnt` only (v2 keeps no such counter).
    pub failcnt: Option<u64>,
}

/// runtime.v1 `ContainerStats`, less the attributes (the server has them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    /// `None` for a container that is not running: containerd then sends no `cpu` and `memory`
    /// (its task has no metrics), only the writable layer.
    pub cgroup: Option<CgroupUsage>,
    pub writable_layer: FilesystemUsage,
}

/// runtime.v1 `ProcessUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessUsage {
    pub timestamp: i64,
    pub process_count: u64,
}

/// runtime.v1 `LinuxPodSandboxStats`, less `containers` (the caller's [`ContainerUsage`]s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// The pod's cgroup (`cpu`, `memory`; its `process_count` is of the whole pod cgroup, pause
    /// included: the RPC's is [`PodUsage::process`]).
    pub cgroup: CgroupUsage,
    /// `None` for a pod without a network namespace of its own (host network).
    pub network: Option<NetworkUsage>,
    pub process: ProcessUsage,
}

pub use crate::events::now_nanos;

/// One earlier reading of a cgroup's CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    timestamp: i64,
    usage: u64,
}

/// The last CPU reading of each container and pod, for `usage_nano_cores`, which needs two.
/// containerd keeps one per container and sandbox in its stores and updates it on every stats
/// call; so does this, keyed by id (container and pod ids do not collide). Forget an id when its
/// container or pod is removed.
#[derive(Debug, Default)]
pub struct Sampler {
    last: Mutex<HashMap<String, Sample>>,
}

impl Sampler {
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Record `usage_core_nano_seconds` read at `timestamp` for `id`, and return the CPU rate
    /// (nanoseconds of CPU per second, i.e. nano-cores) since the previous sample, if any.
    pub fn nano_cores(&self, id: &str, timestamp: i64, usage_core_nano_seconds: u64) -> Option<u64> {
        let now = Sample { timestamp, usage: usage_core_nano_seconds };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(id).copied() {
            None => {
                last.insert(id.to_owned(), now);
                None
            }
            Some(prev) => {
                let rate = rate(prev, now)?;
                last.insert(id.to_owned(), now);
                Some(rate)
            }
        }
    }

    /// Drop what is kept for `id` (its container or pod was removed).
    pub fn forget(&self, id: &str) {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// The rate between two samples, in nano-cores; `None`, keeping the earlier sample, when no time
/// passed or the counter went back (a cgroup read as it was being removed), as containerd 2.x
/// (1.6 wraps around on the latter).
fn rate(prev: Sample, now: Sample) -> Option<u64> {
    let elapsed = now.timestamp.checked_sub(prev.timestamp).filter(|ns| *ns > 0)?;
    let used = now.usage.checked_sub(prev.usage)?;
    let rate = u128::from(used) * 1_000_000_000 / elapsed as u128;
    Some(u64::try_from(rate).unwrap_or(u64::MAX))
}

/// A memory limit above this is "none": the kernel's "unlimited" values (v1's
/// 9223372036854771712, v2's `max` read as 2^64−1) round differently; containerd and cAdvisor
/// use this bound.
const UNLIMITED_ABOVE: u64 = 1 << 62;

/// `memory.stat` keys of each cgroup version: v1 has the hierarchical `total_*` twins, which
/// count the cgroup's descendants as v2's keys always do.
struct MemoryKeys {
    inactive_file: &'static str,
    rss: &'static str,
    pgfault: &'static str,
    pgmajfault: &'static str,
}

const V1_KEYS: MemoryKeys = MemoryKeys {
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    pgfault: "total_pgfault",
    pgmajfault: "total_pgmajfault",
};
const V2_KEYS: MemoryKeys =
    MemoryKeys { inactive_file: "inactive_file", rss: "anon", pgfault: "pgfault", pgmajfault: "pgmajfault" };

/// Usage minus inactive file pages, floored at 0.
fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// What a limit leaves: `limit − used`, floored at 0; 0 when there is no limit.
fn available(limit: u64, used: u64) -> u64 {
    if limit == 0 || limit > UNLIMITED_ABOVE {
        return 0;
    }
    limit.saturating_sub(used)
}

/// CRI memory numbers from libcontainer's statistics of a cgroup whose memory controller is of
/// version `memory_version`.
fn memory_usage(s: &Stats, memory_version: Version, timestamp: i64) -> MemoryUsage {
    let keys = match memory_version {
        Version::V1 => &V1_KEYS,
        Version::V2 => &V2_KEYS,
    };
    let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let usage = s.memory.usage.usage;
    let working_set_bytes = working_set(usage, raw(keys.inactive_file));
    MemoryUsage {
        timestamp,
        working_set_bytes,
        available_bytes: available(s.memory.usage.limit, working_set_bytes),
        usage_bytes: usage,
        rss_bytes: raw(keys.rss),
        page_faults: raw(keys.pgfault),
        major_page_faults: raw(keys.pgmajfault),
    }
}

/// Swap numbers, where the cgroup accounts swap. libcontainer reports memory+swap on both
/// versions (as runc): usage and limit of memory+swap, the memory entry beside them; a zero
/// memory+swap limit means no accounting (v1 without `memory.memsw.*`, v2 without
/// `memory.swap.current`). Swap alone: v1's `total_swap` of `memory.stat` (one file, where the
/// difference of two files read one after the other would show memory growth as swap), v2's
/// memory+swap less the memory usage it was summed from. The swap limit is the difference of the
/// limits.
fn swap_usage(s: &Stats, memory_version: Version, timestamp: i64) -> Option<SwapUsage> {
    let (memsw, mem) = (&s.memory.swap, &s.memory.usage);
    if memsw.limit == 0 {
        return None;
    }
    let swap_usage_bytes = match (memory_version, s.memory.raw.get("total_swap")) {
        (Version::V1, Some(swap)) => *swap,
        _ => memsw.usage.saturating_sub(mem.usage),
    };
    // Either limit "none": no swap limit (0 available, as for memory). Equal limits: swap
    // forbidden, nothing available either.
    let swap_available_bytes = if memsw.limit > UNLIMITED_ABOVE || mem.limit > UNLIMITED_ABOVE {
        0
    } else {
        memsw.limit.saturating_sub(mem.limit).saturating_sub(swap_usage_bytes)
    };
    Some(SwapUsage { timestamp, swap_available_bytes, swap_usage_bytes })
}

/// The version of the hierarchy serving the memory controller: a v1 one where it is mounted,
/// else cgroup2 (as libcontainer's manager picks it).
fn memory_version(layout: &cgroups::Layout) -> Version {
    if layout.hierarchies.iter().any(|h| h.version == Version::V1 && h.has("memory")) {
        Version::V1
    } else {
        Version::V2
    }
}

/// CPU, memory, swap and process count of the cgroup at `cgroups_path` (absolute, as the OCI
/// spec's `linux.cgroupsPath` roci-cri writes), with `usage_nano_cores` from `sampler` under `id`.
pub fn cgroup_usage(sampler: &Sampler, id: &str, cgroups_path: &str) -> Result<CgroupUsage> {
    let err = |source| StatsError::Cgroup { path: cgroups_path.to_owned(), source };
    let path = CgroupPath::new(cgroups_path).map_err(err)?;
    let layout = cgroups::detect().map_err(err)?;
    let timestamp = now_nanos();
    let stats = layout.manager(&path).and_then(|m| m.stats()).map_err(err)?;
    tracing::debug!(id, cgroup = cgroups_path, "read cgroup statistics");
    Ok(usage_from_stats(sampler, id, &stats, memory_version(layout), timestamp))
}

fn usage_from_stats(sampler: &Sampler, id: &str, s: &Stats, memory_version: Version, timestamp: i64) -> CgroupUsage {
    let usage_core_nano_seconds = s.cpu.usage.total;
    CgroupUsage {
        cpu: CpuUsage {
            timestamp,
            usage_core_nano_seconds,
            usage_nano_cores: sampler.nano_cores(id, timestamp, usage_core_nano_seconds),
        },
        memory: memory_usage(s, memory_version, timestamp),
        swap: swap_usage(s, memory_version, timestamp),
        process_count: s.pids.current,
        detail: detail(s, memory_version),
    }
}

fn detail(s: &Stats, memory_version: Version) -> CgroupDetail {
    let cache_key = match memory_version {
        Version::V1 => "total_cache",
        Version::V2 => "file",
    };
    CgroupDetail {
        cpu_user_nano_seconds: s.cpu.usage.user,
        cpu_system_nano_seconds: s.cpu.usage.kernel,
        cache_bytes: s.memory.raw.get(cache_key).copied(),
        failcnt: (memory_version == Version::V1).then_some(s.memory.usage.failcnt),
    }
}

/// Disk use of a container's writable layer: the overlay upper directory `upper`, on its own
/// filesystem, each inode once; reported under `mountpoint` (the path ImageFsInfo reports).
pub fn writable_layer(upper: &Path, mountpoint: &Path) -> Result<FilesystemUsage> {
    let timestamp = now_nanos();
    let (used_bytes, inodes_used) =
        crate::images::disk_usage(upper).map_err(|(path, source)| StatsError::Layer { path, source })?;
    Ok(FilesystemUsage { timestamp, mountpoint: mountpoint.to_owned(), used_bytes, inodes_used })
}

/// A container's usage: its cgroup when `cgroups_path` is given (a running container), and its
/// writable layer.
pub fn container_usage(
    sampler: &Sampler,
    id: &str,
    cgroups_path: Option<&str>,
    upper: &Path,
    mountpoint: &Path,
) -> Result<ContainerUsage> {
    let cgroup = cgroups_path.map(|p| cgroup_usage(sampler, id, p)).transpose()?;
    Ok(ContainerUsage { cgroup, writable_layer: writable_layer(upper, mountpoint)? })
}

/// A pod's usage: its cgroup (`pod_cgroup`: the sandbox config's `linux.cgroup_parent`; containerd
/// 1.6 fails PodSandboxStats when that is empty), its network namespace `netns` (none for host
/// network), and the process count of `containers`, the usage of its running containers.
pub fn pod_usage(
    sampler: &Sampler,
    pod_id: &str,
    pod_cgroup: &str,
    netns: Option<&Path>,
    containers: &[ContainerUsage],
) -> Result<PodUsage> {
    let cgroup = cgroup_usage(sampler, pod_id, pod_cgroup)?;
    let network = netns.map(read_network).transpose()?;
    let process_count = containers.iter().filter_map(|c| c.cgroup.as_ref()).map(|c| c.process_count).sum();
    Ok(PodUsage { cgroup, network, process: ProcessUsage { timestamp: cgroup.cpu.timestamp, process_count } })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use libcontainer::cgroups::stats::MemoryEntry;

    use super::*;

    const SEC: i64 = 1_000_000_000;

    /// `memory.stat` as libcontainer keeps it.
    fn raw(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn nano_cores_need_two_samples_and_forget_drops_the_first() {
        let s = Sampler::new();
        assert_eq!(s.nano_cores("c1", 10 * SEC, 5_000_000_000), None, "first sample: no rate");
        // 1.5 s of CPU in 2 s: 0.75 cores.
        assert_eq!(s.nano_cores("c1", 12 * SEC, 6_500_000_000), Some(750_000_000));
        // The rate is from the previous call, not the first.
        assert_eq!(s.nano_cores("c1", 13 * SEC, 8_500_000_000), Some(2_000_000_000));
        assert_eq!(s.nano_cores("p1", 13 * SEC, 1), None, "ids are separate");
        s.forget("c1");
        assert_eq!(s.nano_cores("c1", 14 * SEC, 9_000_000_000), None);
    }

    #[test]
    fn no_rate_without_elapsed_time_or_when_the_counter_goes_back() {
        let s = Sampler::new();
        s.nano_cores("c", 10 * SEC, 1000);
        assert_eq!(s.nano_cores("c", 10 * SEC, 2000), None, "same instant");
        assert_eq!(s.nano_cores("c", 9 * SEC, 2000), None, "clock went back");
        assert_eq!(s.nano_cores("c", 11 * SEC, 500), None, "counter went back");
        // The first sample was kept through all three.
        assert_eq!(s.nano_cores("c", 12 * SEC, 1000 + SEC as u64), Some(500_000_000));
        assert_eq!(rate(Sample { timestamp: 0, usage: 0 }, Sample { timestamp: 1, usage: u64::MAX }), Some(u64::MAX));
    }

    #[test]
    fn working_set_is_usage_less_inactive_file_floored() {
        assert_eq!(working_set(100, 30), 70);
        assert_eq!(working_set(30, 100), 0);
        assert_eq!(available(1000, 700), 300);
        assert_eq!(available(1000, 1200), 0, "over the limit: floored");
        assert_eq!(available(9223372036854771712, 700), 0, "v1 unlimited");
        assert_eq!(available(u64::MAX, 700), 0, "v2 max");
        assert_eq!(available(0, 700), 0, "no memory controller");
    }

    fn stats(raw_stat: &[(&str, u64)], usage: u64, limit: u64) -> Stats {
        let mut s = Stats::default();
        s.memory.raw = raw(raw_stat);
        s.memory.usage = MemoryEntry { usage, limit, ..Default::default() };
        s
    }

    #[test]
    fn memory_keys_per_version() {
        let v1 = stats(
            &[
                ("inactive_file", 1),
                ("total_inactive_file", 300),
                ("rss", 2),
                ("total_rss", 500),
                ("total_pgfault", 7),
                ("total_pgmajfault", 3),
            ],
            1000,
            4096,
        );
        let m = memory_usage(&v1, Version::V1, 42);
        assert_eq!(
            m,
            MemoryUsage {
                timestamp: 42,
                working_set_bytes: 700,
                available_bytes: 3396,
                usage_bytes: 1000,
                rss_bytes: 500,
                page_faults: 7,
                major_page_faults: 3
            }
        );
        let v2 = stats(&[("inactive_file", 200), ("anon", 600), ("pgfault", 9), ("pgmajfault", 1)], 1000, u64::MAX);
        let m = memory_usage(&v2, Version::V2, 42);
        assert_eq!(
            (m.working_set_bytes, m.available_bytes, m.rss_bytes, m.page_faults, m.major_page_faults),
            (800, 0, 600, 9, 1)
        );
    }

    #[test]
    fn swap_is_memory_plus_swap_less_memory() {
        let mut s = stats(&[], 1000, 4096);
        assert_eq!(swap_usage(&s, Version::V2, 1), None, "no swap accounting");
        s.memory.swap = MemoryEntry { usage: 1500, limit: 8192, ..Default::default() };
        assert_eq!(
            swap_usage(&s, Version::V2, 1),
            Some(SwapUsage { timestamp: 1, swap_usage_bytes: 500, swap_available_bytes: 3596 })
        );
        s.memory.swap.limit = 9223372036854771712;
        assert_eq!(swap_usage(&s, Version::V2, 1).unwrap().swap_available_bytes, 0, "no swap limit");
        // v2 with memory.max and swap.max both max: libcontainer reports 2^64-1.
        s.memory.usage.limit = u64::MAX;
        s.memory.swap.limit = u64::MAX;
        assert_eq!(
            swap_usage(&s, Version::V2, 1).unwrap(),
            SwapUsage { timestamp: 1, swap_usage_bytes: 500, swap_available_bytes: 0 }
        );
        // Swap forbidden (memory+swap limit = memory limit).
        let mut s = stats(&[], 1000, 4096);
        s.memory.swap = MemoryEntry { usage: 1000, limit: 4096, ..Default::default() };
        assert_eq!(
            swap_usage(&s, Version::V2, 1).unwrap(),
            SwapUsage { timestamp: 1, swap_usage_bytes: 0, swap_available_bytes: 0 }
        );
        // v1: memory.stat's total_swap, not the difference of two reads.
        let mut s = stats(&[("total_swap", 100)], 1000, 4096);
        s.memory.swap = MemoryEntry { usage: 1300, limit: 8192, ..Default::default() };
        assert_eq!(
            swap_usage(&s, Version::V1, 1).unwrap(),
            SwapUsage { timestamp: 1, swap_usage_bytes: 100, swap_available_bytes: 3996 }
        );
        s.memory.raw.clear();
        assert_eq!(swap_usage(&s, Version::V1, 1).unwrap().swap_usage_bytes, 300, "older kernels: the difference");
    }

    #[test]
    fn cgroup_usage_takes_cpu_and_pids() {
        let mut s = stats(&[], 10, 0);
        s.cpu.usage.total = 5 * SEC as u64;
        s.pids.current = 3;
        let sampler = Sampler::new();
        let u = usage_from_stats(&sampler, "c", &s, Version::V2, 7 * SEC);
        assert_eq!(u.cpu, CpuUsage { timestamp: 7 * SEC, usage_core_nano_seconds: 5 * SEC as u64, usage_nano_cores: None });
        assert_eq!((u.process_count, u.swap, u.memory.usage_bytes), (3, None, 10));
        assert_eq!(u.detail, CgroupDetail::default(), "v2: no failcnt, no `file` key: no cache");
        s.cpu.usage.total = 6 * SEC as u64;
        assert_eq!(usage_from_stats(&sampler, "c", &s, Version::V2, 9 * SEC).cpu.usage_nano_cores, Some(500_000_000));
    }

    #[test]
    fn detail_per_version() {
        let mut s = stats(&[("total_cache", 40), ("file", 9)], 10, 0);
        s.cpu.usage.user = 3;
        s.cpu.usage.kernel = 4;
        s.memory.usage.failcnt = 2;
        let d = detail(&s, Version::V1);
        assert_eq!(
            d,
            CgroupDetail { cpu_user_nano_seconds: 3, cpu_system_nano_seconds: 4, cache_bytes: Some(40), failcnt: Some(2) }
        );
        let d = detail(&s, Version::V2);
        assert_eq!((d.cache_bytes, d.failcnt), (Some(9), None));
    }

    #[test]
    fn relative_or_bad_cgroup_paths_are_refused() {
        let e = cgroup_usage(&Sampler::new(), "c", "kubepods/x").unwrap_err();
        assert!(e.to_string().contains("kubepods/x") && e.to_string().contains("not absolute"), "{e}");
        assert!(!e.is_not_found());
    }

    #[test]
    fn writable_layer_counts_the_upper_dir() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/a"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(upper.join("etc/a"), upper.join("b")).unwrap();
        let u = writable_layer(&upper, Path::new("/var/lib/roci-cri/images")).unwrap();
        assert_eq!(u.inodes_used, 3, "upper, etc, a (b is a)");
        assert!(u.used_bytes >= 64 * 1024, "{u:?}");
        assert_eq!(u.mountpoint, Path::new("/var/lib/roci-cri/images"));
        let e = writable_layer(&t.path().join("gone"), Path::new("/")).unwrap_err();
        assert!(e.is_not_found() && e.to_string().contains("gone"), "{e}");
    }
}
