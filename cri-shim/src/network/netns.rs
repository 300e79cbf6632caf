//! Pinned network namespaces: a pod's network namespace outlives every process in it (the pause
//! container may die and be restarted; CNI DEL must still find the interfaces) because a file
//! holds it: `<dir>/<name>` with the namespace bind-mounted onto it, as `ip netns add` does.
//!
//! roci-cri is async and must never fork, so the namespace is made on a dedicated thread:
//! `unshare(CLONE_NEWNET)` moves only the calling thread into a new namespace; the thread
//! bind-mounts its own `/proc/thread-self/ns/net` onto the file and exits. The mount, in the
//! daemon's mount namespace, keeps the network namespace alive. A pooled thread (tokio's
//! blocking pool) is never used: it would be left in the pod's namespace for the next task.
//!
//! Removing is `umount2(MNT_DETACH)` and unlink; both tolerate what is already gone, so removing
//! twice, or removing what a crash half made, succeeds.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace name {name:?}: only letters, digits, '_', '.' and '-', not starting with '.'")]
    InvalidName { name: String },
    #[error("create the network namespace directory {dir}: {source}")]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("create the network namespace file {path}: {source}")]
    CreateFile { path: PathBuf, source: std::io::Error },
    #[error("create the network namespace {path}: start its thread: {source}")]
    Thread { path: PathBuf, source: std::io::Error },
    #[error("create the network namespace {path}: its thread panicked")]
    ThreadPanicked { path: PathBuf },
    #[error("create the network namespace {path}: unshare(CLONE_NEWNET): {source}")]
    Unshare { path: PathBuf, source: Errno },
    #[error("pin the network namespace: bind-mount /proc/thread-self/ns/net on {path}: {source}")]
    Mount { path: PathBuf, source: Errno },
    #[error("remove the network namespace {path}: unmount: {source}")]
    Unmount { path: PathBuf, source: Errno },
    #[error("remove the network namespace {path}: unlink: {source}")]
    Unlink { path: PathBuf, source: std::io::Error },
}

/// Create a new network namespace pinned at `dir/name` and return that path. Blocks for the
/// life of a short thread: from async code, call it in `spawn_blocking`. The file must not exist
/// (a pod's namespace is made once); on failure nothing is left behind.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf, NetnsError> {
    if !valid_name(name) {
        return Err(NetnsError::InvalidName { name: name.into() });
    }
    std::fs::create_dir_all(dir).map_err(|source| NetnsError::CreateDir { dir: dir.into(), source })?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| NetnsError::CreateFile { path: path.clone(), source })?;
    let pinned = std::thread::Builder::new()
        .name("roci-netns".into())
        .spawn({
            let path = path.clone();
            move || pin_new_namespace(&path)
        })
        .map_err(|source| NetnsError::Thread { path: path.clone(), source })
        .and_then(|thread| thread.join().map_err(|_| NetnsError::ThreadPanicked { path: path.clone() })?);
    if let Err(e) = pinned {
        // The thread mounts last: on its failure only the file is there (a panic after the
        // mount cannot happen, but removing handles a mount too).
        if let Err(cleanup) = remove(&path) {
            tracing::warn!(netns = %path.display(), error = %cleanup, "remove a half-made network namespace");
        }
        return Err(e);
    }
    tracing::debug!(netns = %path.display(), "pinned a new network namespace");
    Ok(path)
}

/// On the dedicated thread: enter a new network namespace and pin it on `path`. The thread ends
/// right after, so it never runs anything else in the pod's namespace.
fn pin_new_namespace(path: &Path) -> Result<(), NetnsError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Unshare { path: path.into(), source })?;
    nix::mount::mount(Some("/proc/thread-self/ns/net"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|source| NetnsError::Mount { path: path.into(), source })
}

/// Unpin and remove the namespace file at `path`; the namespace itself goes when nothing else
/// holds it. Succeeds when it is already gone, wholly or in part.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (never pinned, or already unmounted); ENOENT: no file.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(source) => return Err(NetnsError::Unmount { path: path.into(), source }),
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(NetnsError::Unlink { path: path.into(), source }),
    }
    tracing::debug!(netns = %path.display(), "removed the network namespace");
    Ok(())
}

/// Whether `path` is a pinned network namespace (a mount of a network namespace file).
pub fn is_pinned(path: &Path) -> bool {
    // Only an nsfs mount has the magic of nsfs; a plain file has that of its filesystem.
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// The names of pinned namespaces: a pod's id, which is also a file name.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_anything_is_made() {
        let dir = tempfile::tempdir().expect("temp dir");
        for bad in ["", ".", "..", "a/b", ".hidden", "a b"] {
            assert!(matches!(create(dir.path(), bad), Err(NetnsError::InvalidName { .. })), "{bad:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);
    }

    #[test]
    fn removing_what_is_not_there_succeeds() {
        let dir = tempfile::tempdir().expect("temp dir");
        remove(&dir.path().join("absent")).expect("absent");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").expect("write");
        assert!(!is_pinned(&plain));
        remove(&plain).expect("a file never pinned");
        assert!(!plain.exists());
    }
}
