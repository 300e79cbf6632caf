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
//! from a view of its binary that cannot be written whatever the path it
//! is reached by ([`ensure_protected`]); its clones inherit that
//! `/proc/self/exe`. The library enforces it: `create` and `exec` refuse to
//! clone a container process unless [`protected`] says so ([`require`]),
//! so no caller of libcontainer can forget it, and none can get it wrong by
//! guessing which configurations expose the binary (roci once did, and the
//! shebang path was not among its guesses). What [`protected`] checks is
//! the file itself (`fstatfs` and `F_GET_SEALS` of `/proc/self/exe`), never
//! a variable a parent could have set.
//!
//! The view, by preference:
//! 1. **a detached read-only bind mount of the binary**
//!    (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)`),
//!    executed through its fd (`execveat(AT_EMPTY_PATH)`) and never
//!    attached anywhere: no path leads to it, nothing is left to clean up
//!    (closing the fd at the `execve` dissolves its anonymous mount
//!    namespace; the mount lives on, unmounted, as long as a process
//!    executes it), nothing is copied. Writes through it fail with EROFS.
//!    Its read-only flag cannot be undone: once dissolved the mount belongs
//!    to no namespace, and `mount_setattr` and remount refuse a mount that
//!    is not mounted, whatever the caller's capabilities. It is the same
//!    inode as the host's file, checked (device and inode) against the
//!    running binary, so an upgrade that replaced the file in between is
//!    noticed.
//! 2. **a sealed memfd copy** (`F_SEAL_WRITE|SHRINK|GROW|SEAL`) where the
//!    process may not make mounts (rootless): writes fail with EPERM; it
//!    costs a copy of the binary per command, in time and memory.
//!
//! runc 1.2 uses a read-only overlayfs of the binary's directory instead
//! (`fsopen("overlay")` + `fsmount(MOUNT_ATTR_RDONLY)`), and roci did at
//! first. Measured here (Linux 6.18, 2 CPUs, loaded): the bind takes 30-60
//! µs to make against 100-300 µs for the overlay (which also needs a second,
//! empty lower layer, i.e. a detached tmpfs, as overlayfs without an upper
//! layer wants two), and it is one detached mount to dissolve at the
//! `execve` instead of two: each dissolution waits for an RCU grace period
//! (0.1 ms idle, up to several ms on a busy machine), the largest part of
//! the protection's cost. The overlay's one advantage, an inode that is not
//! the host's, buys nothing once the mount's flag cannot be changed.
//! `/proc/PID/exe` of a protected process reads `/` (the root of the
//! detached bind), as it does for runc 1.1's processes.
//!
//! The dissolution is not left to the `execve`: the bind's fd stays open
//! across it ([`VIEW_FD_ENV`] names it) and the re-executed runtime holds
//! it until it waits for the container's process anyway ([`release_view`]:
//! `create` after the prestart hooks, while the init pivots; `exec` once
//! the process runs), so the grace period runs beside that work instead of
//! before everything. Every clone of the runtime closes its copy first
//! thing (the runtime's copy is then the last), and the fd is close-on-exec
//! in the runtime. Until then the mount is not yet dissolved: a process
//! that could reach the runtime's fds (`/proc/PID/fd` of a runtime it can
//! ptrace, so in the runtime's PID namespace) and held CAP_SYS_ADMIN over
//! the host's mounts could clear its read-only flag; such a process can
//! write the host's files without the runtime's help.
//!
//! # The cost
//! One `execve` of the runtime (the binary's pages are in the page cache),
//! the bind and its dissolution, per command that makes container
//! processes (`create`, `run`, `exec`); `state`, `start`, `kill`, `delete`
//! and the rest pay nothing. roci calls [`ensure_protected`] before it
//! parses its command line (it tells those three commands from the first
//! word), so the work before the `execve` is done once. `hack/bench`
//! measures `run` and `exec` with it against crun.
//!
//! Before the re-exec, the path the binary was run from is left in
//! [`ORIGINAL_EXE_ENV`] for [`original_exe`] (finding helpers beside the
//! binary): the re-executed process's `/proc/self/exe` names the detached
//! mount's root, which no path outside the process leads to.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::statfs::fstatfs;
use nix::sys::statvfs::FsFlags;

use crate::sys::mount as mnt;

/// Where [`ensure_protected`] leaves the path the binary was started from.
pub const ORIGINAL_EXE_ENV: &str = "ROCI_ORIGINAL_EXE";

/// Where [`ensure_protected`] leaves the number of the fd of the detached
/// bind the process was executed from (see [`release_view`]).
pub const VIEW_FD_ENV: &str = "ROCI_PROTECTED_VIEW_FD";

/// The detached bind this process runs from, until [`release_view`].
static VIEW: std::sync::Mutex<Option<OwnedFd>> = std::sync::Mutex::new(None);

/// Close the fd of the detached bind of the binary that this process was
/// executed from, if it still holds it: the last close dissolves the mount,
/// which waits for an RCU grace period (0.1 ms on an idle machine, several
/// on a busy one). The runtime calls it where it waits for the container's
/// process anyway; a clone of the runtime calls it first thing
/// ([`crate::sys::clone_process`]), which only drops its copy. Exiting
/// closes it too.
pub fn release_view() {
    let view = VIEW.lock().map(|mut v| v.take()).unwrap_or_default();
    drop(view);
}

/// Take over the fd [`VIEW_FD_ENV`] names, if it is an `O_PATH` fd of the
/// running binary (`exe`); the variable is removed either way.
fn hold_view(exe: &File) {
    let Some(fd) = std::env::var(VIEW_FD_ENV).ok().and_then(|v| v.parse().ok()) else {
        return;
    };
    std::env::remove_var(VIEW_FD_ENV);
    if let Some(view) = crate::sys::adopt_inherited_path_fd(fd, exe) {
        if let Ok(mut v) = VIEW.lock() {
            *v = Some(view);
        }
    }
}

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
    /// A file on a read-only mount (the detached bind of
    /// [`ensure_protected`], or a binary installed on a read-only mount).
    ReadOnlyMount,
    /// A sealed memfd.
    SealedCopy,
}

const SEALS: SealFlag =
    SealFlag::F_SEAL_SEAL.union(SealFlag::F_SEAL_SHRINK).union(SealFlag::F_SEAL_GROW).union(SealFlag::F_SEAL_WRITE);

/// How the file open as `exe` cannot be written, if it cannot.
fn protection_of(exe: impl AsFd) -> Option<Protection> {
    let exe = exe.as_fd();
    if fstatfs(exe).is_ok_and(|st| st.flags().contains(FsFlags::ST_RDONLY)) {
        return Some(Protection::ReadOnlyMount);
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
        hold_view(&exe);
        return Ok(());
    }
    let path = std::fs::read_link("/proc/self/exe").map_err(err("read /proc/self/exe"))?;
    let (file, how, view) = match read_only_bind(&exe, &path) {
        Ok(f) => (f, "a read-only bind mount", true),
        Err(e) => {
            tracing::debug!(error = %e, "no read-only bind of the runtime binary; copying it to a sealed memfd");
            (OwnedFd::from(sealed_copy(&exe, &path)?), "a sealed memfd copy", false)
        }
    };
    drop(exe);
    // The bind stays open across the execve, for the new image to close
    // when it waits anyway (release_view); a failed flag change only costs
    // the grace period at the execve, as before.
    let view = view && fcntl(file.as_fd(), FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).is_ok();
    let argv: Vec<CString> = std::env::args_os().filter_map(|a| CString::new(a.into_vec()).ok()).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != ORIGINAL_EXE_ENV && k != VIEW_FD_ENV)
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
    if view {
        envp.extend(CString::new(format!("{VIEW_FD_ENV}={}", file.as_raw_fd())).ok());
    }
    tracing::debug!(path = %path.display(), how, "re-executing the runtime from a protected view of its binary");
    let e = nix::unistd::fexecve(file.as_fd(), &argv, &envp).map_err(std::io::Error::from).unwrap_err();
    Err(err("execute the protected binary")(e))
}

/// The binary at `path`, through a detached read-only bind mount of it (an
/// `O_PATH` fd), checked to be the file this process runs (the path may
/// name another by now, e.g. after an upgrade).
fn read_only_bind(exe: &File, path: &Path) -> Result<OwnedFd, Error> {
    let tree = mnt::clone_tree(path, false).map_err(err("open_tree (clone) the binary"))?;
    mnt::readonly_tree(tree.as_fd()).map_err(err("make the binary's bind read-only"))?;
    let (a, b) = (exe.metadata().map_err(err("stat"))?, nix::sys::stat::fstat(tree.as_fd()).map_err(nix_err("stat"))?);
    if (a.dev(), a.ino()) != (b.st_dev, b.st_ino) {
        return Err(err("bind")(std::io::Error::other(format!("{} is no longer the running binary", path.display()))));
    }
    if protection_of(&tree) != Some(Protection::ReadOnlyMount) {
        return Err(err("bind")(std::io::Error::other("the bind mount is not read-only")));
    }
    Ok(tree)
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
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn test_binary_is_not_protected() {
        assert_eq!(protected(), None);
        assert!(matches!(require(), Err(Error::Unprotected)));
    }

    /// Both views of this test binary refuse writes, and are recognised.
    #[test]
    fn protected_views_refuse_writes() {
        let exe = File::open("/proc/self/exe").unwrap();
        let path = std::fs::read_link("/proc/self/exe").unwrap();
        let mut views = vec![OwnedFd::from(sealed_copy(&exe, &path).unwrap())];
        match read_only_bind(&exe, &path) {
            Ok(f) => views.push(f),
            // Not root: the copy is what roci would use.
            Err(e) => eprintln!("no read-only bind: {e}"),
        }
        for view in views {
            let how = protection_of(&view).expect("recognised as protected");
            // What the attacker does: open for writing, truncating.
            let reopen =
                std::fs::OpenOptions::new().write(true).truncate(true).open(format!("/proc/self/fd/{}", view.as_raw_fd()));
            let e = reopen.expect_err("a protected view opens for writing");
            let expected = match how {
                Protection::ReadOnlyMount => libc::EROFS,
                Protection::SealedCopy => libc::EPERM,
            };
            assert_eq!(e.raw_os_error(), Some(expected), "{how:?}: {e}");
        }
    }
}
