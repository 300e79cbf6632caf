//! Checks of `linux.resources` that need nothing but the config, made
//! before any cgroup file is written (by `Manager::apply`, and by
//! [`validate_resources`](super::validate_resources) for callers that want
//! to fail before creating anything). Each error names the field.
//!
//! Where runc is looser, the reason is a value the kernel would take as
//! something else or refuse with a bare `EINVAL`:
//! - `cpu.quota` below -1: runc writes it (v1 takes any negative as "no
//!   limit", v2 gets `max`); -1 is the documented "no limit", and anything
//!   else negative is refused here.
//! - `cpu.quota` 1–999 and `cpu.period` outside 1000–1000000: the kernel's
//!   bounds (1 ms, and 1 ms to 1 s), `EINVAL` otherwise.
//! - `cpu.burst` above a positive `quota`: the kernel refuses it, and OCI
//!   allows runtimes to.
//! - `memory.limit`/`reservation`/`swap` and `pids.limit` below -1.
//! - `blockIO` weights outside 10–1000 and impossible device numbers
//!   (`blockio::validate`).
//! - `rdma` entries without a limit (OCI: at least one is REQUIRED) and
//!   device names the kernel's `rdma.max` parser would split.
//! - `network.priorities` interface names that are empty, too long or
//!   would split the `ifpriomap` line.
//! - `hugepageLimits` page sizes and `unified` keys (already checked when
//!   written; checked here first too).

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::controllers::check_page_size;
use super::{blockio, v2, Error, Result};

/// The kernel's bounds for the CFS bandwidth period and the least quota, in
/// microseconds (`kernel/sched/core.c`: `min_cfs_quota_period`,
/// `max_cfs_quota_period`).
pub(crate) const MIN_CFS_US: u64 = 1_000;
pub(crate) const MAX_CFS_PERIOD_US: u64 = 1_000_000;
/// Longest interface name (`IFNAMSIZ` - 1).
const IFNAME_MAX: usize = 15;

pub fn validate(r: &LinuxResources) -> Result<()> {
    if let Some(c) = r.cpu() {
        cpu(c)?;
    }
    if let Some(m) = r.memory() {
        memory(m)?;
    }
    if let Some(p) = r.pids() {
        if p.limit() < -1 {
            return Err(invalid("linux.resources.pids.limit", format!("{} (use -1, or 0, for no limit)", p.limit())));
        }
    }
    if let Some(b) = r.block_io() {
        blockio::validate(b)?;
    }
    for l in r.hugepage_limits().iter().flatten() {
        check_page_size(l.page_size())?;
    }
    if let Some(rdma) = r.rdma() {
        let mut names: Vec<&String> = rdma.keys().collect();
        names.sort();
        for name in names {
            let l = &rdma[name];
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid("linux.resources.rdma", format!("{name:?} is not a device name")));
            }
            if l.hca_handles().is_none() && l.hca_objects().is_none() {
                return Err(invalid("linux.resources.rdma", format!("{name:?}: give hcaHandles, hcaObjects or both")));
            }
        }
    }
    if let Some(n) = r.network() {
        for (i, p) in n.priorities().iter().flatten().enumerate() {
            let name = p.name();
            if name.is_empty() || name.len() > IFNAME_MAX || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/')
            {
                return Err(invalid("linux.resources.network.priorities", format!("[{i}] {name:?} is not an interface name")));
            }
        }
    }
    for key in r.unified().iter().flat_map(|u| u.keys()) {
        v2::unified::controller_of(key)?;
    }
    Ok(())
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::Invalid { field, reason }
}

fn cpu(c: &LinuxCpu) -> Result<()> {
    let quota = c.quota().unwrap_or(0);
    if quota < -1 {
        return Err(invalid("linux.resources.cpu.quota", format!("{quota} (use -1 for no limit)")));
    }
    if quota > 0 && (quota as u64) < MIN_CFS_US {
        return Err(invalid(
            "linux.resources.cpu.quota",
            format!("{quota} µs is below the kernel's least quota of {MIN_CFS_US} µs (1 ms)"),
        ));
    }
    if let Some(p) = c.period().filter(|&p| p != 0) {
        if !(MIN_CFS_US..=MAX_CFS_PERIOD_US).contains(&p) {
            return Err(invalid(
                "linux.resources.cpu.period",
                format!("{p} µs is outside the kernel's {MIN_CFS_US}-{MAX_CFS_PERIOD_US} µs (1 ms to 1 s)"),
            ));
        }
    }
    if let Some(burst) = c.burst() {
        if quota > 0 && burst > quota as u64 {
            return Err(invalid("linux.resources.cpu.burst", format!("{burst} µs is above the quota of {quota} µs")));
        }
    }
    Ok(())
}

fn memory(m: &LinuxMemory) -> Result<()> {
    for (field, v) in [
        ("linux.resources.memory.limit", m.limit()),
        ("linux.resources.memory.reservation", m.reservation()),
        ("linux.resources.memory.swap", m.swap()),
    ] {
        if let Some(v) = v.filter(|&v| v < -1) {
            return Err(invalid(field, format!("{v} (use -1 for no limit)")));
        }
    }
    if let Some(s) = m.swappiness().filter(|&s| s > 100) {
        return Err(invalid("linux.resources.memory.swappiness", format!("{s} is not in 0-100")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::controllers::tests::resources;
    use super::*;

    fn field_of(json: &str) -> (&'static str, String) {
        match validate(&resources(json)) {
            Err(Error::Invalid { field, reason }) => (field, reason),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn good_values_pass() {
        validate(&resources(
            r#"{"cpu":{"quota":-1,"period":1000000,"burst":0,"shares":1024},"memory":{"limit":-1,"swap":-1,"swappiness":100},
                "pids":{"limit":-1},"blockIO":{"weight":10},"rdma":{"mlx5_0":{"hcaObjects":1}},
                "network":{"classID":1,"priorities":[{"name":"eth0","priority":1}]},"unified":{"misc.max":"x"},
                "hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#,
        ))
        .unwrap();
        validate(&resources(r#"{"cpu":{"quota":1000,"period":1000,"burst":1000},"pids":{"limit":0}}"#)).unwrap();
        validate(&LinuxResources::default()).unwrap();
    }

    #[test]
    fn each_bad_value_names_its_field() {
        for (json, field, says) in [
            (r#"{"cpu":{"quota":-2}}"#, "linux.resources.cpu.quota", "-2 (use -1 for no limit)"),
            (r#"{"cpu":{"quota":999}}"#, "linux.resources.cpu.quota", "below the kernel's least quota of 1000"),
            (r#"{"cpu":{"period":999}}"#, "linux.resources.cpu.period", "999 µs is outside the kernel's 1000-1000000"),
            (r#"{"cpu":{"period":1000001}}"#, "linux.resources.cpu.period", "1000001"),
            (r#"{"cpu":{"quota":50000,"burst":60000}}"#, "linux.resources.cpu.burst", "above the quota"),
            (r#"{"memory":{"limit":-2}}"#, "linux.resources.memory.limit", "-2"),
            (r#"{"memory":{"reservation":-5}}"#, "linux.resources.memory.reservation", "-5"),
            (r#"{"memory":{"swappiness":101}}"#, "linux.resources.memory.swappiness", "101"),
            (r#"{"pids":{"limit":-2}}"#, "linux.resources.pids.limit", "-2 (use -1, or 0, for no limit)"),
            (r#"{"blockIO":{"weight":5}}"#, "linux.resources.blockIO.weight", "5 is outside 10-1000"),
            (r#"{"rdma":{"mlx5_0":{}}}"#, "linux.resources.rdma", "give hcaHandles"),
            (r#"{"rdma":{"a b":{"hcaHandles":1}}}"#, "linux.resources.rdma", "not a device name"),
            (r#"{"network":{"priorities":[{"name":"eth0 1","priority":1}]}}"#, "linux.resources.network.priorities", "[0]"),
            (r#"{"network":{"priorities":[{"name":"","priority":1}]}}"#, "linux.resources.network.priorities", "[0] \"\""),
            (r#"{"hugepageLimits":[{"pageSize":"2M","limit":1}]}"#, "linux.resources.hugepageLimits", "2M"),
            (r#"{"unified":{"cgroup.procs":"1"}}"#, "linux.resources.unified", "managed by the runtime"),
        ] {
            let (f, reason) = field_of(json);
            assert_eq!(f, field, "{json}");
            assert!(reason.contains(says), "{json}: {reason}");
        }
    }
}
