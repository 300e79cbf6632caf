//! Which controllers a `linux.resources` asks for, the same for v1 and v2:
//! the manager looks for a hierarchy serving each, and names the first field
//! that asked when none does. A value of zero (or an absent one) asks for
//! nothing, as in runc.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::blockio;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Cpuset,
    Memory,
    Cpu,
    Pids,
    Hugetlb,
    Blkio,
    Rdma,
    NetCls,
    NetPrio,
}

impl Controller {
    /// The v1 name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
            Controller::Hugetlb => "hugetlb",
            Controller::Blkio => "blkio",
            Controller::Rdma => "rdma",
            Controller::NetCls => "net_cls",
            Controller::NetPrio => "net_prio",
        }
    }

    /// The cgroup2 name, `None` for the v1-only network controllers.
    pub(crate) fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Blkio => Some("io"),
            Controller::NetCls | Controller::NetPrio => None,
            c => Some(c.name()),
        }
    }
}

/// The controllers `r` asks for, in the order they are written (cpuset
/// first, as runc does: a later write may depend on the CPUs), each with the
/// first field asking for it.
pub(crate) fn requested(r: &LinuxResources) -> Vec<(Controller, &'static str)> {
    let mut out = Vec::new();
    if let Some(field) = r.cpu().as_ref().and_then(cpuset_field) {
        out.push((Controller::Cpuset, field));
    }
    if let Some(field) = r.memory().as_ref().and_then(memory_field) {
        out.push((Controller::Memory, field));
    }
    if let Some(field) = r.cpu().as_ref().and_then(cpu_field) {
        out.push((Controller::Cpu, field));
    }
    if r.pids().is_some() {
        out.push((Controller::Pids, "linux.resources.pids.limit"));
    }
    if r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty()) {
        out.push((Controller::Hugetlb, "linux.resources.hugepageLimits"));
    }
    if let Some(field) = r.block_io().as_ref().and_then(blockio::first_field) {
        out.push((Controller::Blkio, field));
    }
    if r.rdma().as_ref().is_some_and(|d| !d.is_empty()) {
        out.push((Controller::Rdma, "linux.resources.rdma"));
    }
    if let Some(n) = r.network() {
        if n.class_id().is_some_and(|c| c != 0) {
            out.push((Controller::NetCls, "linux.resources.network.classID"));
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            out.push((Controller::NetPrio, "linux.resources.network.priorities"));
        }
    }
    out
}

fn cpuset_field(c: &LinuxCpu) -> Option<&'static str> {
    if c.cpus().as_deref().is_some_and(|s| !s.is_empty()) {
        Some("linux.resources.cpu.cpus")
    } else if c.mems().as_deref().is_some_and(|s| !s.is_empty()) {
        Some("linux.resources.cpu.mems")
    } else {
        None
    }
}

fn memory_field(m: &LinuxMemory) -> Option<&'static str> {
    let set = |v: Option<i64>| v.is_some_and(|v| v != 0);
    if set(m.limit()) {
        Some("linux.resources.memory.limit")
    } else if set(m.reservation()) {
        Some("linux.resources.memory.reservation")
    } else if set(m.swap()) {
        Some("linux.resources.memory.swap")
    } else if m.swappiness().is_some() {
        Some("linux.resources.memory.swappiness")
    } else if m.disable_oom_killer() == Some(true) {
        Some("linux.resources.memory.disableOOMKiller")
    } else if set(m.kernel_tcp()) {
        Some("linux.resources.memory.kernelTCP")
    } else {
        None
    }
}

fn cpu_field(c: &LinuxCpu) -> Option<&'static str> {
    if c.shares().is_some_and(|v| v != 0) {
        Some("linux.resources.cpu.shares")
    } else if c.quota().is_some_and(|v| v != 0) {
        Some("linux.resources.cpu.quota")
    } else if c.period().is_some_and(|v| v != 0) {
        Some("linux.resources.cpu.period")
    } else if c.burst().is_some() {
        Some("linux.resources.cpu.burst")
    } else if c.idle().is_some() {
        Some("linux.resources.cpu.idle")
    } else if c.realtime_runtime().is_some_and(|v| v != 0) {
        Some("linux.resources.cpu.realtimeRuntime")
    } else if c.realtime_period().is_some_and(|v| v != 0) {
        Some("linux.resources.cpu.realtimePeriod")
    } else {
        None
    }
}

/// A hugepage size as the kernel names its files (`64KB`, `2MB`, `1GB`).
pub(crate) fn check_page_size(size: &str) -> super::Result<()> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !["KB", "MB", "GB"].contains(&unit) {
        return Err(super::Error::Invalid {
            field: "linux.resources.hugepageLimits",
            reason: format!("page size {size:?} is not <number>KB, MB or GB"),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn zero_and_absent_ask_for_nothing() {
        let r = resources(r#"{"memory":{"limit":0,"swap":0},"cpu":{"shares":0,"quota":0,"cpus":""}}"#);
        assert!(requested(&r).is_empty());
        assert!(requested(&LinuxResources::default()).is_empty());
    }

    #[test]
    fn each_controller_names_its_first_field() {
        let r = resources(
            r#"{"memory":{"reservation":5},"cpu":{"mems":"0","period":100000},"pids":{"limit":0},
                "hugepageLimits":[{"pageSize":"2MB","limit":0}],"blockIO":{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1}]},
                "rdma":{"mlx5_0":{"hcaHandles":1}},"network":{"classID":0,"priorities":[{"name":"lo","priority":1}]}}"#,
        );
        let got: Vec<_> = requested(&r).into_iter().map(|(c, f)| (c.name(), f)).collect();
        assert_eq!(
            got,
            [
                ("cpuset", "linux.resources.cpu.mems"),
                ("memory", "linux.resources.memory.reservation"),
                ("cpu", "linux.resources.cpu.period"),
                ("pids", "linux.resources.pids.limit"),
                ("hugetlb", "linux.resources.hugepageLimits"),
                ("blkio", "linux.resources.blockIO.throttleReadBpsDevice"),
                ("rdma", "linux.resources.rdma"),
                ("net_prio", "linux.resources.network.priorities"),
            ]
        );
        let r = resources(r#"{"blockIO":{"weight":0},"rdma":{},"network":{"classID":7}}"#);
        let got: Vec<_> = requested(&r).into_iter().map(|(c, f)| (c.name(), c.v2_name(), f)).collect();
        assert_eq!(got, [("net_cls", None, "linux.resources.network.classID")]);
        assert_eq!(Controller::Blkio.v2_name(), Some("io"));
    }

    #[test]
    fn page_sizes() {
        for ok in ["2MB", "1GB", "64KB"] {
            check_page_size(ok).unwrap();
        }
        for bad in ["", "MB", "2mb", "2M", "2 MB", "../x", "2MB/../x", "-2MB"] {
            assert!(check_page_size(bad).is_err(), "{bad:?}");
        }
    }
}
