//! `delete`: remove a stopped (or, with `force`, any) container.

use std::path::Path;

use super::kill::kill_and_wait;
use super::{hook_state, status, Error, Result, Status};
use crate::hooks;
use crate::state::Dir;

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = match Dir::open(root, id) {
        Ok(d) => d,
        // As runc: with --force, a container that is already gone is not an error.
        Err(crate::state::Error::NotExist(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let saved = dir.load()?;
    let st = status(&dir.path, saved.as_ref());
    let Some(saved) = saved else {
        // A create that died before it finished: we hold the lock, so
        // nothing is working on it any more.
        dir.remove()?;
        return Ok(());
    };
    match st {
        Status::Stopped => {}
        Status::Created => kill_and_wait(&saved, 10)?,
        Status::Running | Status::Paused | Status::Creating => {
            if !force {
                return Err(Error::Status(format!("cannot delete container {id} that is not stopped: {st}")));
            }
            kill_and_wait(&saved, 10)?;
        }
    }
    if let Some(cg) = saved.cgroup()? {
        cg.destroy()?;
    }
    let state = hook_state(id, Status::Stopped, saved.pid, &saved.bundle, &saved.annotations);
    let spec = saved.spec()?;
    let poststop = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref());
    for hook in poststop.into_iter().flatten() {
        if let Err(e) = hooks::run("poststop", hook, &state) {
            tracing::warn!(error = %e, "poststop hook failed");
        }
    }
    dir.remove()?;
    remove_image_bundle(id, &saved)
}

/// A container made from an image (`roci run --image`) takes its bundle and
/// snapshot with it. The annotation alone is not trusted: the bundle must be
/// the one the image root made for this id.
fn remove_image_bundle(id: &str, saved: &crate::state::Saved) -> Result<()> {
    use crate::image::manager::{remove_bundle, ANNOTATION_ROOT};
    let Some(root) = saved.annotations.get(ANNOTATION_ROOT) else {
        return Ok(());
    };
    let root = Path::new(root);
    if saved.bundle != root.join("bundles").join(id) {
        return Ok(());
    }
    Ok(remove_bundle(root, id)?)
}
