//! `kill`: signal the container's init, or every process in its cgroup.

use std::os::fd::AsFd;
use std::path::Path;

use super::{init_pidfd, status, Error, Result, Status};
use crate::{state, sys};

pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let dir = root.join(id);
    if !dir.is_dir() {
        return Err(state::Error::NotExist(id.to_owned()).into());
    }
    let saved = state::load(&dir)?;
    let st = status(&dir, saved.as_ref());
    // As runc: `--all` also reaches what is left of a stopped container (processes of a container
    // without its own PID namespace outlive its init).
    let Some(saved) = saved.filter(|_| st != Status::Creating && (all || st != Status::Stopped)) else {
        return Err(Error::Status("container not running".into()));
    };
    if let (true, Some(m)) = (all, saved.cgroup()?) {
        for pid in m.pids()? {
            tracing::debug!(%pid, signal, "kill");
            if let Err(e) = sys::kill(pid, signal) {
                if e.raw_os_error() != Some(libc::ESRCH) {
                    return Err(Error::Sys { op: format!("kill {pid}"), source: e });
                }
            }
        }
        return Ok(());
    }
    if all && st == Status::Stopped {
        return Ok(());
    }
    let Some(fd) = init_pidfd(&saved) else {
        return Err(Error::Status("container not running".into()));
    };
    tracing::debug!(pid = saved.pid, signal, "signal init");
    sys::pidfd_send_signal(fd.as_fd(), signal).map_err(|source| Error::Sys { op: format!("signal init {}", saved.pid), source })
}

/// SIGKILL the init and wait until it is gone (or a zombie), up to `secs`;
/// a frozen container is thawed so the signal can act.
pub(crate) fn kill_and_wait(saved: &state::Saved, secs: u64) -> Result<()> {
    let Some(fd) = init_pidfd(saved) else { return Ok(()) };
    match sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(source) => return Err(Error::Sys { op: format!("kill init {}", saved.pid), source }),
    }
    if let Some(cg) = saved.cgroup()? {
        if cg.is_frozen().unwrap_or(false) {
            cg.thaw()?;
        }
    }
    let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
    let ms = (secs * 1000).min(i32::MAX as u64) as i32;
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX)) {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(Error::Sys {
            op: format!("wait for init {} to die", saved.pid),
            source: std::io::Error::from(std::io::ErrorKind::TimedOut),
        }),
    }
}
