//! `linux.intelRdt`: Intel Resource Director Technology through the
//! `resctrl` filesystem.
//!
//! Not in this build: the field is refused when the config is loaded,
//! naming it, so a container never runs without the cache or bandwidth
//! partition its config asks for. Without a mounted `resctrl` (this
//! project's test hosts have none: their kernels lack
//! `CONFIG_X86_CPU_RESCTRL`) the spec requires exactly this error; with one,
//! the reason says the build lacks it.

use oci_spec::runtime::Linux;

/// Where `resctrl` is mounted, from `/proc/self/mountinfo`.
pub fn resctrl_mount() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split(' ').next() == Some("resctrl")).then(|| left.split(' ').nth(4).map(std::path::PathBuf::from))?
    })
}

pub fn validate(linux: &Linux) -> Result<(), (String, String)> {
    if linux.intel_rdt().is_none() {
        return Ok(());
    }
    let reason = match resctrl_mount() {
        None => {
            "no resctrl filesystem is mounted (the kernel has no Intel RDT support, or /sys/fs/resctrl is not mounted)".into()
        }
        Some(at) => format!("resctrl is mounted at {}, but Intel RDT is not supported by this build", at.display()),
    };
    Err(("linux.intelRdt".into(), reason))
}
