//! Kernel attributes of the container's processes, one module per
//! config.json field: `process.ioPriority` ([`ioprio`]), `process.scheduler`
//! ([`sched`]), `process.execCPUAffinity` ([`affinity`]),
//! `linux.personality` ([`personality`]) and `linux.memoryPolicy`
//! ([`mempolicy`]).
//!
//! Each module checks its field when the config is loaded (`validate`,
//! called from [`crate::spec`], so a bad value fails before anything is
//! made) and applies it to the calling process (`apply`). [`apply_all`] is
//! the one call the container's init and exec'd processes make, while they
//! still hold every capability (a real-time class or a lower nice value
//! needs CAP_SYS_NICE or CAP_SYS_ADMIN): all of these survive `execve`.

pub mod affinity;
pub mod ioprio;
pub mod mempolicy;
pub mod personality;
pub mod sched;

use oci_spec::runtime::{Linux, Process};

/// A field the kernel refused.
#[derive(Debug, thiserror::Error)]
#[error("apply {field} ({value}): {source}")]
pub struct Error {
    /// The config.json field, as a JSON path.
    pub field: &'static str,
    /// What was asked for, as the kernel was given it.
    pub value: String,
    pub source: std::io::Error,
}

/// A field that is wrong before any kernel object exists: (JSON path
/// below the checked object, reason).
pub type Invalid = (String, String);

/// Check the process-level fields (of config.json or of `exec --process`);
/// the field names are below `process`.
pub fn validate_process(p: &Process) -> Result<(), Invalid> {
    if let Some(io) = p.io_priority() {
        ioprio::validate(io)?;
    }
    if let Some(s) = p.scheduler() {
        sched::validate(s)?;
    }
    if let Some(a) = p.exec_cpu_affinity() {
        affinity::validate(a)?;
    }
    crate::lsm::validate_process(p)?;
    Ok(())
}

/// Check the `linux` fields; the field names are below `linux`.
pub fn validate_linux(l: &Linux) -> Result<(), Invalid> {
    if let Some(p) = l.personality() {
        personality::validate(p)?;
    }
    if let Some(m) = l.memory_policy() {
        mempolicy::validate(m)?;
    }
    Ok(())
}

/// Apply `process.scheduler`, `process.ioPriority`, `linux.personality` and
/// `linux.memoryPolicy` to the calling process, in runc's order.
pub fn apply_all(p: &Process, linux: Option<&Linux>) -> Result<(), Error> {
    if let Some(s) = p.scheduler() {
        sched::apply(s)?;
    }
    if let Some(io) = p.io_priority() {
        ioprio::apply(io)?;
    }
    if let Some(per) = linux.and_then(|l| l.personality().as_ref()) {
        personality::apply(per)?;
    }
    if let Some(m) = linux.and_then(|l| l.memory_policy().as_ref()) {
        mempolicy::apply(m)?;
    }
    Ok(())
}

/// Parse a list such as `0-3,7` (CPUs or NUMA nodes) into its members,
/// each below `limit`.
pub fn parse_list(s: &str, limit: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| format!("{s:?}: {part:?} is not a number or a range N-M"));
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(format!("{s:?}: range {part:?} runs backwards"));
        }
        if hi >= limit {
            return Err(format!("{s:?}: {hi} is above the largest supported number {}", limit - 1));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-3,7", 1024).unwrap(), [0, 1, 2, 3, 7]);
        assert_eq!(parse_list("1,1,0", 8).unwrap(), [0, 1]);
        for bad in ["", "a", "3-1", "0-", "1,,2", "8", "-1"] {
            assert!(parse_list(bad, 8).is_err(), "{bad:?}");
        }
    }
}
