//! v2 `cpuset`: `cpuset.cpus` and `cpuset.mems` (empty means the parent's,
//! so unlike v1 nothing needs seeding).

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::cgroups::{files, Result};

pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        files::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        files::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}
