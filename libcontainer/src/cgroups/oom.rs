//! Waiting for OOM kills in a container's cgroup, for `roci events`.
//!
//! An [`OomNotifier`] is an fd to `poll(2)` for readability plus
//! [`OomNotifier::read_events`] to call when it is readable:
//!
//! - v1: an `eventfd(2)` registered through `cgroup.event_control` for
//!   `memory.oom_control`. The kernel signals it on every OOM in the cgroup
//!   and once more when the cgroup is removed; each signal counts one.
//! - v2: an inotify watch on `memory.events` (the kernel notifies a
//!   modification of it); the OOM kills are the growth of its `oom_kill`
//!   count since the last read, so unrelated changes (`high`, `max`) count
//!   none. The watch goes away with the cgroup (`IN_IGNORED`).
//!
//! ```text
//!   let mut n = manager.oom_notifier()?;
//!   loop {
//!       let ev = n.wait(Some(interval))?;  // or poll n.as_fd() with other fds, then n.read_events()
//!       for _ in 0..ev.count { emit {"type":"oom","id":...} }
//!       if ev.cgroup_removed { break }
//!       (every interval: emit stats)
//!   }
//! ```

use std::ffi::CString;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{files, v2, Error, Result};
use crate::sys::bpf as sys;

/// What [`OomNotifier::read_events`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomEvents {
    /// OOM events since the last read (v1: OOM situations the kernel
    /// signalled; v2: processes the OOM killer killed).
    pub count: u64,
    /// The cgroup is gone: no more events will come.
    pub cgroup_removed: bool,
}

enum Kind {
    /// The eventfd, and `memory.oom_control` kept open while registered.
    V1 { _control: File },
    /// The `oom_kill` count last seen.
    V2 { last: u64 },
}

pub struct OomNotifier {
    fd: File,
    dir: PathBuf,
    kind: Kind,
}

impl AsFd for OomNotifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn syscall_error(op: &str, dir: &Path, source: std::io::Error) -> Error {
    Error::Syscall { op: op.to_owned(), path: dir.to_owned(), source }
}

impl OomNotifier {
    /// Register for the v1 memory cgroup at `dir`.
    pub fn v1(dir: &Path) -> Result<OomNotifier> {
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path).map_err(|source| Error::Open { path: control_path, source })?;
        let efd: OwnedFd = sys::eventfd().map_err(|e| syscall_error("create an eventfd for OOM events", dir, e))?;
        // "<event_fd> <fd of memory.oom_control>" (cgroup-v1/memory.rst, 9).
        files::write(dir, "cgroup.event_control", &format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()))?;
        Ok(OomNotifier { fd: File::from(efd), dir: dir.to_owned(), kind: Kind::V1 { _control: control } })
    }

    /// Watch the v2 cgroup at `dir` (it needs the memory controller).
    pub fn v2(dir: &Path) -> Result<OomNotifier> {
        let last = v2::memory::oom_kill_count(dir)?;
        let fd = sys::inotify_init().map_err(|e| syscall_error("create an inotify instance for OOM events", dir, e))?;
        let events = dir.join("memory.events");
        let path = CString::new(events.as_os_str().as_bytes()).map_err(|_| Error::Invalid {
            field: "linux.cgroupsPath",
            reason: format!("{} contains a NUL byte", dir.display()),
        })?;
        tracing::debug!(path = %events.display(), "inotify watch");
        sys::inotify_add_watch(fd.as_fd(), &path, libc::IN_MODIFY)
            .map_err(|e| syscall_error("watch memory.events (inotify_add_watch)", dir, e))?;
        Ok(OomNotifier { fd: File::from(fd), dir: dir.to_owned(), kind: Kind::V2 { last } })
    }

    /// Wait until the fd is readable or `timeout` passes (`None`: no
    /// timeout), then [`OomNotifier::read_events`].
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<OomEvents> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(syscall_error("poll the OOM notifier", &self.dir, e.into())),
        }
        self.read_events()
    }

    /// Take what the fd has (without blocking) and count the OOM events.
    pub fn read_events(&mut self) -> Result<OomEvents> {
        let mut buf = [0u8; 4096];
        let mut signalled = 0u64;
        loop {
            match self.fd.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // An eventfd read is one u64: the number of signals.
                    if matches!(self.kind, Kind::V1 { .. }) && n == 8 {
                        signalled += u64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(syscall_error("read OOM notifications", &self.dir, e)),
            }
        }
        match &mut self.kind {
            Kind::V1 { .. } => {
                // The kernel also signals when the cgroup goes away (runc
                // tells the two apart the same way).
                if !files::exists(&self.dir, "cgroup.event_control") {
                    return Ok(OomEvents { count: 0, cgroup_removed: true });
                }
                Ok(OomEvents { count: signalled, cgroup_removed: false })
            }
            Kind::V2 { last } => match v2::memory::oom_kill_count(&self.dir) {
                Ok(now) => {
                    let count = now.saturating_sub(*last);
                    *last = now;
                    Ok(OomEvents { count, cgroup_removed: false })
                }
                Err(Error::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {
                    Ok(OomEvents { count: 0, cgroup_removed: true })
                }
                Err(e) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn v2_counts_the_growth_of_oom_kill_and_sees_the_cgroup_go() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n").unwrap();
        let mut n = OomNotifier::v2(&dir).unwrap();
        assert_eq!(n.read_events().unwrap(), OomEvents::default(), "kills before the watch do not count");
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n").unwrap();
        assert_eq!(n.wait(Some(Duration::from_secs(1))).unwrap(), OomEvents { count: 2, cgroup_removed: false });
        assert_eq!(n.read_events().unwrap(), OomEvents::default(), "nothing new");
        let start = std::time::Instant::now();
        assert_eq!(n.wait(Some(Duration::from_millis(50))).unwrap(), OomEvents::default());
        assert!(start.elapsed() >= Duration::from_millis(50));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(n.read_events().unwrap(), OomEvents { count: 0, cgroup_removed: true });
    }

    #[test]
    fn setup_errors_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        let e = OomNotifier::v2(t.path()).err().unwrap().to_string();
        assert!(e.contains("memory.events"), "{e}");
        let e = OomNotifier::v1(t.path()).err().unwrap().to_string();
        assert!(e.contains("memory.oom_control"), "{e}");
        // A plain directory has no cgroup.event_control to register with.
        fs::write(t.path().join("memory.oom_control"), "oom_kill 0\n").unwrap();
        let e = OomNotifier::v1(t.path()).err().unwrap().to_string();
        assert!(e.contains("cgroup.event_control"), "{e}");
    }
}
