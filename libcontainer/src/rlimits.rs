//! `process.rlimits`.

use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

#[derive(Debug, thiserror::Error)]
#[error("set {name} to soft {soft} hard {hard}: {source}")]
pub struct Error {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
    pub source: nix::Error,
}

pub fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Apply every rlimit (while the init still has CAP_SYS_RESOURCE, if it
/// was given it, so hard limits can be raised).
pub fn apply(rlimits: &[PosixRlimit]) -> Result<(), Error> {
    for rl in rlimits {
        tracing::debug!(kind = ?rl.typ(), soft = rl.soft(), hard = rl.hard(), "setrlimit");
        setrlimit(resource(rl.typ()), rl.soft(), rl.hard()).map_err(|source| Error {
            name: serde_json::to_value(rl.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", rl.typ())),
            soft: rl.soft(),
            hard: rl.hard(),
            source,
        })?;
    }
    Ok(())
}
