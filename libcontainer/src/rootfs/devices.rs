//! Device nodes and the standard `/dev` symlinks inside the rootfs.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::LinuxDeviceType;

use super::path::{self, proc_fd_path, Create};
use super::{Error, Result, Setup};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (the OCI runtime-spec's default list).
pub fn defaults() -> Vec<Node> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .into_iter()
        .map(|(name, major, minor)| Node {
            path: Path::new("/dev").join(name),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

/// The default devices plus `linux.devices`; a config entry replaces a
/// default one with the same path.
pub fn planned(s: &Setup<'_>) -> Vec<Node> {
    let configured: Vec<Node> = s
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .map(|d| Node {
            path: d.path().clone(),
            kind: match d.typ() {
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                _ => SFlag::S_IFCHR,
            },
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
        .collect();
    let mut all: Vec<Node> = defaults().into_iter().filter(|d| !configured.iter().any(|c| c.path == d.path)).collect();
    all.extend(configured);
    all
}

/// Create the device nodes and `/dev` links in the rootfs.
pub fn create_all(s: &Setup<'_>, root: BorrowedFd<'_>) -> Result<()> {
    for node in planned(s) {
        create(s, root, &node)?;
    }
    let dev = path::resolve(root, s.rootfs, Path::new("/dev"), Create::Dir, true)?;
    for (link, target) in
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
    {
        match symlinkat(target, dev.as_fd(), link) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::Sys { op: "symlink", path: Path::new("/dev").join(link), source: e }),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = symlinkat("/proc/kcore", dev.as_fd(), "core");
    }
    // /dev/ptmx must be the container's own devpts instance's.
    match unlinkat(dev.as_fd(), "ptmx", UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::Sys { op: "remove", path: "/dev/ptmx".into(), source: e }),
    }
    symlinkat("pts/ptmx", dev.as_fd(), "ptmx").map_err(|e| Error::Sys { op: "symlink", path: "/dev/ptmx".into(), source: e })?;
    if s.terminal {
        // The console's pty slave is bound here once it exists.
        path::resolve(root, s.rootfs, Path::new("/dev/console"), Create::File, false)?;
    }
    Ok(())
}

fn create(s: &Setup<'_>, root: BorrowedFd<'_>, node: &Node) -> Result<()> {
    let parent_path = node.path.parent().unwrap_or(Path::new("/"));
    let name = node.path.file_name().ok_or_else(|| Error::Sys { op: "mknod", path: node.path.clone(), source: Errno::EINVAL })?;
    let parent = path::resolve(root, s.rootfs, parent_path, Create::Dir, true)?;
    let err = |op, source| Error::Sys { op, path: node.path.clone(), source };
    tracing::debug!(path = %node.path.display(), major = node.major, minor = node.minor, "mknod");
    let dev = makedev(node.major, node.minor);
    match mknodat(parent.as_fd(), name, node.kind, Mode::from_bits_truncate(node.mode), dev) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()),
        // Not allowed to make device nodes (a user namespace): bind the
        // host's node instead, as runc does.
        Err(Errno::EPERM) => {
            let target = path::resolve(parent.as_fd(), s.rootfs, Path::new(name), Create::File, false)?;
            return mount(Some(&node.path), &proc_fd_path(target.as_fd()), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| err("bind device", e));
        }
        Err(e) => return Err(err("mknod", e)),
    }
    fchownat(parent.as_fd(), name, Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| err("chown", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list() {
        let d = defaults();
        assert_eq!(d.len(), 6);
        assert!(d.iter().any(|n| n.path == Path::new("/dev/null") && n.major == 1 && n.minor == 3));
        assert!(d.iter().any(|n| n.path == Path::new("/dev/tty") && n.major == 5 && n.minor == 0));
    }
}
