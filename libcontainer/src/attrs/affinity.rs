//! `process.execCPUAffinity`: the CPUs a process started by `exec` runs on,
//! `initial` while it enters the container (set on the runtime before the
//! clone, so the child is born with it) and `final` once it is in the
//! container's cgroup (set by the runtime on the child before it may go on).
//! The spec keeps it off the container's init.
//!
//! Moving a process into a cgroup v1 cpuset resets its affinity to the
//! cpuset's CPUs, so without `final` the kernel decides, as the spec says.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use oci_spec::runtime::ExecCPUAffinity;

use super::{Error, Invalid};

fn parse(field: &str, s: &str) -> Result<CpuSet, Invalid> {
    let err = |e: String| (format!("execCPUAffinity.{field}"), e);
    let cpus = super::parse_list(s, CpuSet::count()).map_err(err)?;
    let mut set = CpuSet::new();
    for c in cpus {
        set.set(c).map_err(|e| err(format!("CPU {c}: {e}")))?;
    }
    Ok(set)
}

/// `initial` and `final` as CPU sets, `None` when absent or empty.
pub fn sets(a: &ExecCPUAffinity) -> Result<(Option<CpuSet>, Option<CpuSet>), Invalid> {
    let get = |field: &str, v: &Option<String>| match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse(field, s).map(Some),
    };
    Ok((get("initial", a.initial())?, get("final", a.cpu_affinity_final())?))
}

pub fn validate(a: &ExecCPUAffinity) -> Result<(), Invalid> {
    sets(a).map(drop)
}

/// The caller's affinity, to put back after the clone.
pub fn current() -> Option<CpuSet> {
    sched_getaffinity(Pid::from_raw(0)).ok()
}

/// Set `initial` on the calling process (the runtime, right before it
/// clones the exec'd process).
pub fn set_initial(set: &CpuSet, text: &str) -> Result<(), Error> {
    sched_setaffinity(Pid::from_raw(0), set).map_err(|e| Error {
        field: "process.execCPUAffinity.initial",
        value: text.to_owned(),
        source: e.into(),
    })
}

/// Set `final` on the exec'd process, once it is in the container's cgroup.
pub fn set_final(pid: Pid, set: &CpuSet, text: &str) -> Result<(), Error> {
    sched_setaffinity(pid, set).map_err(|e| Error {
        field: "process.execCPUAffinity.final",
        value: text.to_owned(),
        source: e.into(),
    })
}

/// Put the runtime's own affinity back (best effort: it only supervises).
pub fn restore(set: &CpuSet) {
    let _ = sched_setaffinity(Pid::from_raw(0), set);
}
