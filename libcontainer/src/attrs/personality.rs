//! `linux.personality`: the execution domain (`personality(2)`); `LINUX32`
//! makes `uname` report a 32-bit machine such as `i686`.

use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

use super::{Error, Invalid};

const PER_LINUX: u32 = 0x0000;
const PER_LINUX32: u32 = 0x0008;

pub fn value(p: &LinuxPersonality) -> u32 {
    match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    }
}

pub fn validate(p: &LinuxPersonality) -> Result<(), Invalid> {
    // The spec defines no flag values yet: any is refused rather than ignored.
    if let Some(f) = p.flags().as_ref().filter(|f| !f.is_empty()) {
        return Err(("personality.flags".into(), format!("{f:?}: no personality flags are supported")));
    }
    Ok(())
}

pub fn apply(p: &LinuxPersonality) -> Result<(), Error> {
    tracing::debug!(domain = %p.domain(), "personality");
    crate::sys::sched::personality(value(p)).map(drop).map_err(|source| Error {
        field: "linux.personality",
        value: p.domain().to_string(),
        source,
    })
}
