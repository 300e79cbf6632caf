//! `pause` and `resume`: freeze and thaw every process of the container
//! through its cgroup (v1 freezer, v2 `cgroup.freeze`).

use std::path::Path;

use super::{status, Error, Result, Status};
use crate::state::Dir;

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let dir = Dir::open(root, id)?;
    let saved = dir.load()?;
    match status(&dir.path, saved.as_ref()) {
        Status::Running | Status::Created => {}
        Status::Paused => return Err(Error::Status(format!("container {id} is already paused"))),
        st => return Err(Error::Status(format!("cannot pause container {id}: it is {st}"))),
    }
    let saved = saved.expect("running containers have state");
    super::need_cgroup(&saved, "pause")?.freeze()?;
    Ok(())
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let dir = Dir::open(root, id)?;
    let saved = dir.load()?;
    match status(&dir.path, saved.as_ref()) {
        Status::Paused => {}
        st => return Err(Error::Status(format!("container {id} is not paused: it is {st}"))),
    }
    let saved = saved.expect("paused containers have state");
    super::need_cgroup(&saved, "resume")?.thaw()?;
    Ok(())
}
