//! `linux.memoryPolicy`: the NUMA memory policy of the container's
//! processes (`set_mempolicy(2)`), kept across `execve` and `fork`.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use super::{Error, Invalid};
use crate::sys::sched as sys;

/// The kernel's `MPOL_*` mode number.
pub fn mode(m: MemoryPolicyModeType) -> i32 {
    match m {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    }
}

/// The kernel's `MPOL_F_*` mode flag.
pub fn flag(f: MemoryPolicyFlagType) -> i32 {
    match f {
        MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
        MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
    }
}

fn nodes(p: &LinuxMemoryPolicy) -> Result<Vec<usize>, Invalid> {
    match p.nodes().as_deref() {
        None | Some("") => Ok(Vec::new()),
        Some(s) => super::parse_list(s, sys::MAX_NUMA_NODES).map_err(|e| ("memoryPolicy.nodes".into(), e)),
    }
}

pub fn validate(p: &LinuxMemoryPolicy) -> Result<(), Invalid> {
    use MemoryPolicyModeType as M;
    let nodes = nodes(p)?;
    let flags = p.flags().as_deref().unwrap_or_default();
    match p.mode() {
        M::MpolDefault | M::MpolLocal if !nodes.is_empty() => {
            return Err(("memoryPolicy.nodes".into(), format!("{} takes no nodes", p.mode())));
        }
        M::MpolDefault if !flags.is_empty() => {
            return Err(("memoryPolicy.flags".into(), "MPOL_DEFAULT takes no flags".into()));
        }
        M::MpolBind | M::MpolInterleave | M::MpolPreferredMany | M::MpolWeightedInterleave if nodes.is_empty() => {
            return Err(("memoryPolicy.nodes".into(), format!("{} needs at least one node", p.mode())));
        }
        _ => {}
    }
    if flags.contains(&MemoryPolicyFlagType::MpolFStaticNodes) && flags.contains(&MemoryPolicyFlagType::MpolFRelativeNodes) {
        return Err(("memoryPolicy.flags".into(), "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other".into()));
    }
    Ok(())
}

pub fn apply(p: &LinuxMemoryPolicy) -> Result<(), Error> {
    let flags = p.flags().as_deref().unwrap_or_default();
    let m = flags.iter().fold(mode(p.mode()), |m, f| m | flag(*f));
    let value = || format!("{} {:?} nodes {:?}", p.mode(), flags, p.nodes().as_deref().unwrap_or(""));
    let nodes = nodes(p).map_err(|(_, e)| Error {
        field: "linux.memoryPolicy",
        value: value(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    tracing::debug!(mode = m, ?nodes, "set_mempolicy");
    sys::set_mempolicy(m, &nodes).map_err(|source| Error { field: "linux.memoryPolicy", value: value(), source })
}
