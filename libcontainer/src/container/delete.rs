//! `delete`: remove a stopped (or, with `force`, any) container.
//!
//! Every step can be repeated, so a `delete` that was killed half-way is
//! finished by running it again: the init is killed (if still alive), the
//! cgroup destroyed (a missing one is fine), the poststop hooks run, the
//! image bundle removed, and the state directory goes last, so that until
//! everything else is gone something still names the container.

use std::collections::BTreeMap;
use std::path::Path;

use super::kill::kill_and_wait;
use super::{hook_state, status, Error, Result, Status};
use crate::hooks;
use crate::state::{self, Dir, Intent};

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = match Dir::open(root, id) {
        Ok(d) => d,
        // As runc: with --force, a container that is already gone is not an error.
        Err(crate::state::Error::NotExist(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let saved = match dir.load() {
        Ok(s) => s,
        // Torn by a machine crash (state files are not fsync'd, see
        // `state::write_atomic`), after which nothing it named exists.
        Err(e @ crate::state::Error::Parse { .. }) => {
            tracing::warn!(error = %e, "ignore unreadable state");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let st = status(&dir.path, saved.as_ref());
    let Some(saved) = saved else {
        // A create that died (was killed) before it saved the state: we
        // hold the lock, so nothing is working on it any more. Remove what
        // it recorded it was making.
        match dir.load_intent() {
            Ok(Some(intent)) => remove_half_made(&intent)?,
            Ok(None) => {}
            // Torn by a machine crash, after which what it listed is gone.
            Err(e @ crate::state::Error::Parse { .. }) => tracing::warn!(error = %e, "ignore unreadable intent"),
            Err(e) => return Err(e.into()),
        }
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
    if !crate::rootfs::has_mount_ns(&spec) {
        crate::rootfs::detach_shared(&saved.rootfs)?;
    }
    let poststop = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref());
    for hook in poststop.into_iter().flatten() {
        if let Err(e) = hooks::run("poststop", hook, &state) {
            tracing::warn!(error = %e, "poststop hook failed");
        }
    }
    remove_image_bundle(id, &saved.bundle, &saved.annotations)?;
    dir.remove()?;
    Ok(())
}

/// What a create killed before it saved the state may have made: its
/// cgroup in any hierarchy (with whatever process is still inside: the
/// cgroup's destroy kills it), the temp file of its pid file, its image
/// bundle, and the rootfs bind of a container without a mount namespace
/// (made in the runtime's). Other mounts need nothing: they were made in
/// the init's mount namespace, which died with it.
fn remove_half_made(intent: &Intent) -> Result<()> {
    tracing::debug!(id = %intent.id, cgroup = ?intent.cgroup_path, "remove what a killed create made");
    if let Some(path) = &intent.cgroup_path {
        crate::cgroups::manager(path)?.destroy()?;
    }
    if intent.shared_rootfs {
        crate::rootfs::detach_shared(&intent.rootfs)?;
    }
    if let Some(pid_file) = &intent.pid_file {
        if let (Some(dir), Some(name)) = (pid_file.parent(), pid_file.file_name().and_then(|n| n.to_str())) {
            let tmp = state::atomic_temp(dir, name);
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { op: "remove", path: tmp, source }),
            }
        }
    }
    remove_image_bundle(&intent.id, &intent.bundle, &intent.annotations)
}

/// A container made from an image (`roci run --image`) takes its bundle and
/// snapshot with it. The annotation alone is not trusted: the bundle must be
/// the one the image root made for this id.
fn remove_image_bundle(id: &str, bundle: &Path, annotations: &BTreeMap<String, String>) -> Result<()> {
    use crate::image_bundle::{bundle_dir, remove, ANNOTATION_ROOT};
    let Some(root) = annotations.get(ANNOTATION_ROOT) else {
        return Ok(());
    };
    let root = Path::new(root);
    if bundle != bundle_dir(root, id) {
        return Ok(());
    }
    Ok(remove(root, id)?)
}
