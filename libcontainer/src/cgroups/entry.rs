//! How a new container process (the init of `create`, the process of
//! `exec`) gets into its cgroup: cloned straight into the cgroup2 directory
//! (`clone3(CLONE_INTO_CGROUP)`), and in each v1 hierarchy by writing `0`
//! to the `tasks` file itself, first thing after `Proceed`.
//!
//! # Why not `cgroup.procs` from the runtime
//! A write of a pid to `cgroup.procs` moves a whole thread group, so the
//! kernel takes its global thread-group lock (`cgroup_threadgroup_rwsem`, a
//! per-CPU rwsem) for writing, and a writer of that lock waits for an RCU
//! grace period: 4 to 20 ms per container start on the reference VM under
//! load (the largest single cost of `run` on a v1 or hybrid host). A thread
//! that moves only itself (`0` into `tasks`) needs no such lock: the kernel
//! skips it because a thread cannot exit or exec under its own write. The
//! new process has no other thread yet, so moving itself moves its whole
//! thread group. Cloning into a cgroup2 directory takes the lock only for
//! reading, as every fork does.
//!
//! The files are opened here, by the runtime, before the clone: the kernel
//! checks a write to `tasks` against the credentials of whoever opened the
//! file, so the process may already be in a user namespace when it writes,
//! and nothing is looked up by path inside the new process.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode as FileMode;

use super::{Error, Result, Version};

/// The open handles a new process enters its cgroup through, one set per
/// hierarchy; made by [`Manager::entry`](super::Manager::entry) or
/// [`SubCgroupDirs::entry`](super::SubCgroupDirs::entry).
#[derive(Debug)]
pub struct Entry {
    /// The cgroup2 directory (cgroup2-only and hybrid hosts), for
    /// `CLONE_INTO_CGROUP`.
    clone_into: Option<(PathBuf, OwnedFd)>,
    /// Each v1 hierarchy's `tasks` file, open for writing.
    tasks: Vec<(PathBuf, File)>,
}

impl Entry {
    /// Open what a process needs to enter the cgroup directories `dirs`,
    /// which must exist (and, for a v1 cpuset, have CPUs and memory nodes).
    pub(crate) fn open<'a>(dirs: impl IntoIterator<Item = (Version, &'a Path)>) -> Result<Entry> {
        let mut entry = Entry { clone_into: None, tasks: Vec::new() };
        for (version, dir) in dirs {
            match version {
                Version::V2 => {
                    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                    let fd = nix::fcntl::open(dir, flags, FileMode::empty())
                        .map_err(|e| Error::Open { path: dir.to_owned(), source: e.into() })?;
                    entry.clone_into = Some((dir.to_owned(), fd));
                }
                Version::V1 => {
                    let path = dir.join("tasks");
                    let file = OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                        .open(&path)
                        .map_err(|source| Error::Open { path: path.clone(), source })?;
                    entry.tasks.push((path, file));
                }
            }
        }
        Ok(entry)
    }

    /// The cgroup2 directory to clone the process into, if the host has one.
    pub fn clone_fd(&self) -> Option<BorrowedFd<'_>> {
        self.clone_into.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// In the new process, before it makes a thread: move the calling
    /// thread into every v1 hierarchy's cgroup.
    pub fn enter_self(&self) -> Result<()> {
        for (path, file) in &self.tasks {
            let mut f = file;
            f.write_all(b"0").map_err(|source| Error::Write { path: path.clone(), value: "0".into(), source })?;
        }
        Ok(())
    }

    /// Whether the process still needs the runtime to move it after a clone
    /// that was asked to place it in the cgroup2 directory but could not
    /// (`clone3` without `CLONE_INTO_CGROUP`): `placed` is what the clone
    /// reported.
    pub fn needs_move_after(&self, placed: bool) -> bool {
        self.clone_into.is_some() && !placed
    }
}
