//! The bundles of containers made from images (`roci run --image`): the
//! little of the image root that the runtime itself must know, so that
//! `delete` takes such a container's bundle and snapshot with it.
//!
//! The images themselves (content store, pulls, unpacking, snapshots) are the
//! `libimage` crate's, which builds on this one and makes these bundles. The
//! removal lives here because `delete` must do it before it removes the
//! container's state directory (a `delete` killed half-way is finished by the
//! next, which finds the state still naming the container), libcontainer
//! cannot depend on the crate above it, and `roci` links no image code. What
//! it needs is a path layout, an annotation and an unmount:
//!
//! ```text
//! <root>/bundles/<id>/            config.json, rootfs/ (the overlay mount), volumes/
//! <root>/snapshots/<id>/          the overlay's upper and work directories
//! ```
//! A bundle's `config.json` carries [`ANNOTATION_ROOT`], whose value is the
//! image root; `delete` follows it only to the bundle the root made for that
//! id.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// The image root when none is given.
pub const DEFAULT_ROOT: &str = "/var/lib/roci";
/// The annotation that marks a container made from an image: its value is the image root.
pub const ANNOTATION_ROOT: &str = "dev.roci.image.root";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or kernel operation failed: "{op} {path}: {source}".
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The id cannot name a bundle.
    #[error("remove the bundle of a container: {0}")]
    Id(#[from] crate::spec::Error),
    /// Something stays mounted on the bundle's rootfs after the overlay was
    /// detached: nothing under it is removed.
    #[error("remove bundle {0}: rootfs is still mounted")]
    StillMounted(PathBuf),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `<root>/bundles/<id>`: the bundle of container `id`.
pub fn bundle_dir(root: &Path, id: &str) -> PathBuf {
    root.join("bundles").join(id)
}

/// `<root>/snapshots/<id>`: the upper and work directories of container `id`'s overlay.
pub fn snapshot_dir(root: &Path, id: &str) -> PathBuf {
    root.join("snapshots").join(id)
}

/// Remove container `id`'s bundle and snapshot under the image root `root`,
/// unmounting its rootfs first. Missing parts are fine, so a removal that was
/// interrupted is finished by the next; a rootfs that stays mounted is an
/// error and nothing under it is removed.
pub fn remove(root: &Path, id: &str) -> Result<()> {
    crate::spec::validate_id(id)?;
    let bundle = bundle_dir(root, id);
    let rootfs = bundle.join("rootfs");
    unmount_overlay(&rootfs)?;
    remove_dir_all(&snapshot_dir(root, id), "remove snapshot")?;
    if let (Ok(b), Ok(r)) = (std::fs::metadata(&bundle), std::fs::symlink_metadata(&rootfs)) {
        if b.dev() != r.dev() {
            return Err(Error::StillMounted(bundle));
        }
    }
    remove_dir_all(&bundle, "remove bundle")
}

/// Detach the overlay mounted at `target`, if the top mount there is one.
/// A missing `target` has nothing mounted on it.
pub fn unmount_overlay(target: &Path) -> Result<()> {
    let Ok(target) = std::fs::canonicalize(target) else {
        return Ok(());
    };
    let mountinfo = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(mountinfo).map_err(|source| Error::Io { op: "read", path: mountinfo.into(), source })?;
    let top = crate::mountinfo::parse(&text).into_iter().rfind(|m| m.mount_point == target);
    if top.is_some_and(|m| m.fstype == "overlay") {
        umount2(&target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(|e| Error::Io {
            op: "unmount snapshot overlay",
            path: target.clone(),
            source: e.into(),
        })?;
        tracing::debug!(target = %target.display(), "unmounted overlay");
    }
    Ok(())
}

fn remove_dir_all(dir: &Path, op: &'static str) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io { op, path: dir.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_takes_bundle_and_snapshot_and_unmounts() {
        let root = tempfile::tempdir().unwrap();
        let (bundle, snap) = (bundle_dir(root.path(), "c1"), snapshot_dir(root.path(), "c1"));
        let rootfs = bundle.join("rootfs");
        let (lower, upper, work) = (snap.join("lower"), snap.join("upper"), snap.join("work"));
        for d in [&rootfs, &lower, &upper, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(bundle.join("config.json"), b"{}").unwrap();
        let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        nix::mount::mount(Some("overlay"), &rootfs, Some("overlay"), nix::mount::MsFlags::empty(), Some(data.as_str())).unwrap();
        remove(root.path(), "c1").unwrap();
        assert!(!bundle.exists() && !snap.exists());
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!text.contains(rootfs.to_str().unwrap()), "overlay still mounted");
        remove(root.path(), "c1").unwrap(); // gone already: Ok
    }

    #[test]
    fn refuses_ids_that_leave_the_root() {
        let root = tempfile::tempdir().unwrap();
        for id in ["", "..", "../x", "a/b"] {
            assert!(matches!(remove(root.path(), id), Err(Error::Id(_))), "{id:?}");
        }
    }

    #[test]
    fn leaves_a_bundle_whose_rootfs_stays_mounted() {
        let root = tempfile::tempdir().unwrap();
        let rootfs = bundle_dir(root.path(), "c2").join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        // Not an overlay: not ours to unmount.
        nix::mount::mount(Some("tmpfs"), &rootfs, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).unwrap();
        std::fs::write(rootfs.join("keep"), b"").unwrap();
        let result = remove(root.path(), "c2");
        let kept = rootfs.join("keep").exists();
        umount2(&rootfs, MntFlags::MNT_DETACH).unwrap();
        assert!(matches!(result, Err(Error::StillMounted(_))), "{result:?}");
        assert!(kept, "nothing under a mounted rootfs is removed");
    }
}
