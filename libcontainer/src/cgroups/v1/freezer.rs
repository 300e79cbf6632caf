//! v1 `freezer`: stop every task of a cgroup while its processes are listed
//! and killed, so none can fork a new one in between.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cgroups::{files, Result};

const STATE: &str = "freezer.state";

/// Freeze the cgroup and wait (up to a second) until the kernel reports it
/// frozen. `false` when `dir` has no freezer (not a freezer hierarchy, or gone).
pub fn freeze(dir: &Path) -> Result<bool> {
    if !files::exists(dir, STATE) {
        return Ok(false);
    }
    files::write(dir, STATE, "FROZEN")?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pause = Duration::from_millis(1);
    while files::read_opt(dir, STATE)?.is_some_and(|s| s != "FROZEN") && Instant::now() < deadline {
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    Ok(true)
}

pub fn thaw(dir: &Path) -> Result<()> {
    files::write(dir, STATE, "THAWED")
}
