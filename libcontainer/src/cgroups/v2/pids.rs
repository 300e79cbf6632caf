//! v2 `pids`: `pids.max`; statistics as in v1 (`v1::pids::stats`).

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::cgroups::v1::pids::pids_max;
use crate::cgroups::{files, Result};

/// `pids.max`: the limit, or `max` for zero and below (no limit).
pub fn apply(dir: &Path, p: &LinuxPids) -> Result<()> {
    files::write(dir, "pids.max", &pids_max(p.limit())).map_err(|e| e.in_field("linux.resources.pids.limit"))
}
