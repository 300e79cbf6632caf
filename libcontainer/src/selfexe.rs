//! Keeping the runtime's binary out of reach of the container
//! (CVE-2019-5736).
//!
//! # The attack
//! roci's container processes (the init of `create`, the process of
//! `exec`) are clones of the runtime, so until they execute the container's
//! program their `/proc/self/exe` is the runtime's binary on the host. Two
//! ways lead a process inside the container to that file:
//! - the program the clone executes is a script whose first line is
//!   `#!/proc/self/exe`: the kernel resolves the interpreter in the process
//!   that executes the script, so the container's process becomes the
//!   runtime's binary, dumpable like any program, in the container's
//!   namespaces;
//! - a process of the container opens `/proc/PID/exe` of a runtime process
//!   in its PID namespace (an `exec`, the init of a container joining the
//!   PID namespace, any container sharing the host's): non-dumpable, but
//!   CAP_SYS_PTRACE opens it anyway.
//!
//! Either way the attacker keeps a descriptor of the file (`O_PATH` is
//! enough), waits until no process executes it any more (writing fails with
//! ETXTBSY until then) and opens it again for writing through
//! `/proc/self/fd/N`: the host's runtime binary now holds the attacker's
//! code, which the host runs as root at the next container start.
//! `tests/oci/exe_overwrite.rs` does exactly that, for `run`,
//! `create`+`start` and `exec`, with and without a PID namespace.
//!
//! # The defence, and why this one
//! Every process that makes container processes first re-executes itself
//! from a file that cannot be written whatever the path it is reached by
//! ([`ensure_protected`]); its clones inherit that `/proc/self/exe`. The
//! library enforces it: `create` and `exec` refuse to clone a container
//! process unless [`protected`] says so ([`require`]), so no caller of
//! libcontainer can forget it, and none can get it wrong by guessing which
//! configurations expose the binary (roci once did, and the shebang path was
//! not among its guesses). What [`protected`] checks is the file itself
//! (`fstatfs` and `F_GET_SEALS` of `/proc/self/exe`), never a variable a
//! parent could have set.
//!
//! The file, by preference:
//! 1. **a read-only overlayfs of the binary's directory**, made with the new
//!    mount API (`fsopen("overlay")`, `lowerdir` = that directory plus an
//!    empty detached tmpfs, as overlayfs without an upper layer needs two,
//!    `fsmount` with `MOUNT_ATTR_RDONLY`) and never attached anywhere: no
//!    path leads to it, nothing is left to clean up (the kernel drops it
//!    with the last process executing it), and nothing is copied. With no
//!    upper layer the superblock itself is read-only, so even a process
//!    that could change the mount's flags could not write through it. This
//!    is what runc 1.2 does.
//! 2. **a sealed memfd copy** (`F_SEAL_WRITE|SHRINK|GROW|SEAL`) where
//!    overlayfs cannot be mounted (rootless, no overlayfs, a binary in `/`,
//!    a binary whose directory overlayfs refuses as a layer): writes fail
//!    with EPERM; it costs a copy of the binary per command, in time and
//!    memory.
//!
//! Considered and not taken: a detached read-only bind mount of the file
//! (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)`). It
//! is the cheapest to make (9 µs against 180 µs for the overlay, measured
//! here on Linux 6.18), but the read-only flag belongs to the mount, over
//! the host's own inode: whoever may change that mount's flags (CAP_SYS_ADMIN
//! in the initial user namespace, e.g. a privileged container) has the
//! writable file again. The overlay has no such undo, and its extra
//! ~0.2 ms is small beside the `execve` both need.
//!
//! # The cost
//! One `execve` of the runtime (the binary's pages are in the page cache)
//! plus the overlay, per command that makes container processes (`create`,
//! `run`, `exec`); `state`, `start`, `kill`, `delete` and the rest pay
//! nothing. `hack/bench` measures `run` and `exec` with it against crun.
//!
//! Before the re-exec, the path the binary was run from is left in
//! [`ORIGINAL_EXE_ENV`] for [`original_exe`] (finding helpers beside the
//! binary): the re-executed process's `/proc/self/exe` names the overlay's
//! file, which no path outside the process leads to.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, openat, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;
use nix::sys::statfs::{fstatfs, OVERLAYFS_SUPER_MAGIC};
use nix::sys::statvfs::FsFlags;

use crate::sys::overlay as fs;

/// Where [`ensure_protected`] leaves the path the binary was started from.
pub const ORIGINAL_EXE_ENV: &str = "ROCI_ORIGINAL_EXE";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("protect the runtime binary: {op}: {source}")]
    Io { op: &'static str, source: std::io::Error },
    /// A container process was about to be made by a process that runs
    /// from a writable binary.
    #[error(
        "the runtime binary (/proc/self/exe) is writable through the container processes it would make \
         (CVE-2019-5736): call libcontainer::selfexe::ensure_protected() before create or exec"
    )]
    Unprotected,
}

fn err(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { op, source }
}

fn nix_err(op: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::Io { op, source: e.into() }
}

/// What this process runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A read-only overlayfs mount.
    ReadOnlyOverlay,
    /// A sealed memfd.
    SealedCopy,
}

const SEALS: SealFlag =
    SealFlag::F_SEAL_SEAL.union(SealFlag::F_SEAL_SHRINK).union(SealFlag::F_SEAL_GROW).union(SealFlag::F_SEAL_WRITE);

/// How the file open as `exe` cannot be written, if it cannot.
fn protection_of(exe: &File) -> Option<Protection> {
    if let Ok(st) = fstatfs(exe) {
        if st.filesystem_type() == OVERLAYFS_SUPER_MAGIC && st.flags().contains(FsFlags::ST_RDONLY) {
            return Some(Protection::ReadOnlyOverlay);
        }
    }
    match fcntl(exe, FcntlArg::F_GET_SEALS) {
        Ok(bits) if SealFlag::from_bits_truncate(bits).contains(SEALS) => Some(Protection::SealedCopy),
        _ => None,
    }
}

/// How this process's binary is protected, or `None` when a process
/// holding it could write it.
pub fn protected() -> Option<Protection> {
    let exe = File::open("/proc/self/exe").ok()?;
    protection_of(&exe)
}

/// `Ok` when this process may make container processes: its binary is
/// protected ([`protected`]).
pub fn require() -> Result<(), Error> {
    match protected() {
        Some(_) => Ok(()),
        None => Err(Error::Unprotected),
    }
}

/// The path this program was started from: `/proc/self/exe`, or before
/// [`ensure_protected`] re-executed it, the path it had then.
pub fn original_exe() -> Option<PathBuf> {
    if protected().is_some() {
        if let Some(p) = std::env::var_os(ORIGINAL_EXE_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
    }
    std::env::current_exe().ok()
}

/// Re-execute this process, with the same arguments and environment, from a
/// protected view of its binary (see the module doc), unless it already
/// runs from one. Returns `Ok` only when nothing had to be done.
///
/// Call it first thing in `main`, before threads exist and before any
/// state is made: the process starts over.
pub fn ensure_protected() -> Result<(), Error> {
    let exe = File::open("/proc/self/exe").map_err(err("open /proc/self/exe"))?;
    if protection_of(&exe).is_some() {
        return Ok(());
    }
    let path = std::fs::read_link("/proc/self/exe").map_err(err("read /proc/self/exe"))?;
    let (file, how) = match read_only_overlay(&exe, &path) {
        Ok(f) => (f, "a read-only overlay"),
        Err(e) => {
            tracing::debug!(error = %e, "no read-only overlay of the runtime binary; copying it to a sealed memfd");
            (sealed_copy(&exe, &path)?, "a sealed memfd copy")
        }
    };
    drop(exe);
    let argv: Vec<CString> = std::env::args_os().filter_map(|a| CString::new(a.into_vec()).ok()).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != ORIGINAL_EXE_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut original = OsString::from(format!("{ORIGINAL_EXE_ENV}="));
    original.push(&path);
    envp.extend(CString::new(original.into_vec()).ok());
    tracing::debug!(path = %path.display(), how, "re-executing the runtime from a protected view of its binary");
    let e = nix::unistd::fexecve(file.as_fd(), &argv, &envp).map_err(std::io::Error::from).unwrap_err();
    Err(err("execute the protected binary")(e))
}

/// Escape a path for overlayfs's `lowerdir` list (`:` separates layers,
/// `\` escapes).
fn escape_layer(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in dir.as_os_str().as_bytes() {
        if b == b':' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The binary, opened through a detached read-only overlayfs of its
/// directory; checked to be the file this process runs (the path may name
/// another by now, e.g. after an upgrade).
fn read_only_overlay(exe: &File, path: &Path) -> Result<File, Error> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(err("overlay")(std::io::Error::other(format!("{}: no directory to overlay", path.display()))));
    };
    // Overlayfs without an upper layer takes two lower ones: the second is
    // an empty, detached tmpfs (read-only, 4 KiB), reached through its fd.
    let tmpfs = fs::fsopen(c"tmpfs").map_err(err("fsopen tmpfs"))?;
    fs::fsconfig_set_string(tmpfs.as_fd(), c"size", c"4k").map_err(err("fsconfig tmpfs size"))?;
    fs::fsconfig_create(tmpfs.as_fd()).map_err(err("create tmpfs"))?;
    let empty: OwnedFd = fs::fsmount_with(tmpfs.as_fd(), fs::MOUNT_ATTR_RDONLY).map_err(err("fsmount tmpfs"))?;
    let mut lower = escape_layer(dir);
    lower.extend_from_slice(format!(":/proc/self/fd/{}", empty.as_raw_fd()).as_bytes());
    let lower = CString::new(lower).map_err(|_| err("overlay lowerdir")(std::io::ErrorKind::InvalidInput.into()))?;
    let ovl = fs::fsopen(c"overlay").map_err(err("fsopen overlay"))?;
    fs::fsconfig_set_string(ovl.as_fd(), c"lowerdir", &lower).map_err(err("fsconfig overlay lowerdir"))?;
    fs::fsconfig_create(ovl.as_fd()).map_err(err("create overlay"))?;
    let mnt = fs::fsmount_with(ovl.as_fd(), fs::MOUNT_ATTR_RDONLY).map_err(err("fsmount overlay"))?;
    let fd = openat(mnt.as_fd(), name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(nix_err("open in overlay"))?;
    let file = File::from(fd);
    let (a, b) = (exe.metadata().map_err(err("stat"))?, file.metadata().map_err(err("stat"))?);
    if (a.size(), a.mtime(), a.mtime_nsec(), a.ctime(), a.ctime_nsec())
        != (b.size(), b.mtime(), b.mtime_nsec(), b.ctime(), b.ctime_nsec())
    {
        return Err(err("overlay")(std::io::Error::other(format!("{} is no longer the running binary", path.display()))));
    }
    if protection_of(&file) != Some(Protection::ReadOnlyOverlay) {
        return Err(err("overlay")(std::io::Error::other("the overlay is not read-only")));
    }
    Ok(file)
}

/// A sealed memfd copy of the running binary (named after it, so
/// `/proc/PID/exe` reads `/memfd:NAME (deleted)`).
fn sealed_copy(exe: &File, path: &Path) -> Result<File, Error> {
    let name = path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_else(|| b"roci".to_vec());
    let name = CString::new(name).unwrap_or_else(|_| c"roci".to_owned());
    let memfd =
        memfd_create(name.as_c_str(), MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).map_err(nix_err("memfd_create"))?;
    let mut copy = File::from(memfd);
    let mut src = exe.try_clone().map_err(err("dup /proc/self/exe"))?;
    std::io::copy(&mut src, &mut copy).map_err(err("copy the binary"))?;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(SEALS)).map_err(nix_err("seal the copy"))?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binary_is_not_protected() {
        assert_eq!(protected(), None);
        assert!(matches!(require(), Err(Error::Unprotected)));
    }

    #[test]
    fn layer_paths_are_escaped() {
        assert_eq!(escape_layer(Path::new("/usr/bin")), b"/usr/bin");
        assert_eq!(escape_layer(Path::new("/a:b\\c")), b"/a\\:b\\\\c");
    }

    /// Both views of this test binary refuse writes, and are recognised.
    #[test]
    fn protected_views_refuse_writes() {
        let exe = File::open("/proc/self/exe").unwrap();
        let path = std::fs::read_link("/proc/self/exe").unwrap();
        let mut views = vec![sealed_copy(&exe, &path).unwrap()];
        match read_only_overlay(&exe, &path) {
            Ok(f) => views.push(f),
            // Not root, or no overlayfs here: the copy is what roci would use.
            Err(e) => eprintln!("no overlay view: {e}"),
        }
        for view in views {
            let how = protection_of(&view).expect("recognised as protected");
            // What the attacker does: open for writing, truncating.
            let reopen =
                std::fs::OpenOptions::new().write(true).truncate(true).open(format!("/proc/self/fd/{}", view.as_raw_fd()));
            let e = reopen.expect_err("a protected view opens for writing");
            let expected = match how {
                Protection::ReadOnlyOverlay => libc::EROFS,
                Protection::SealedCopy => libc::EPERM,
            };
            assert_eq!(e.raw_os_error(), Some(expected), "{how:?}: {e}");
        }
    }
}
