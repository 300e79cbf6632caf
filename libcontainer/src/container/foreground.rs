//! Staying in the foreground as a container process's parent (`run`, and
//! `exec` without `--detach`): forward signals to it, proxy its terminal
//! when the caller gave no console socket, and return its exit code.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{Error, Result};
use crate::sys;

/// Every signal a terminal or supervisor might send that the container
/// should get instead of us (and SIGCHLD, to notice its exit).
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGILL, Signal::SIGFPE, Signal::SIGTRAP]
    {
        set.remove(s);
    }
    set
}

/// Wait for `pid` (our child) while forwarding `forwarded` signals to it and
/// copying between our stdio and `master`; its exit code (128+N for a
/// signal, as shells report it).
pub fn supervise(pid: Pid, master: Option<OwnedFd>, forwarded: &SigSet) -> Result<i32> {
    let sfd = SignalFd::with_flags(forwarded, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::Sys { op: "signalfd".into(), source: e.into() })?;
    let stdin = std::io::stdin();
    let raw = master.as_ref().and_then(|_| RawMode::enter(stdin.as_fd()));
    if let (Some(m), Ok((rows, cols))) = (&master, sys::window_size(stdin.as_fd())) {
        let _ = sys::set_window_size(m.as_fd(), rows, cols);
    }
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let exit = loop {
        if let Some(code) = reap(pid)? {
            break code;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let (Some(m), true) = (&master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        let stdin_idx = fds.len();
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::Sys { op: "poll".into(), source: e.into() }),
        }
        let sig_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let master_ready = master_open && fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        let stdin_ready = stdin_open && fds.get(stdin_idx).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        drop(fds);
        if sig_ready {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let (Some(m), Ok((rows, cols))) = (&master, sys::window_size(stdin.as_fd())) {
                        let _ = sys::set_window_size(m.as_fd(), rows, cols);
                    }
                } else if sig != libc::SIGCHLD {
                    tracing::debug!(sig, %pid, "forward signal");
                    let _ = sys::kill(pid, sig);
                }
            }
        }
        if master_ready {
            if let Some(m) = &master {
                master_open = copy(m.as_fd(), &mut std::io::stdout());
            }
        }
        if stdin_ready {
            if let Some(m) = &master {
                stdin_open = copy_to(stdin.as_fd(), m.as_fd());
            }
        }
    };
    // Output written just before the exit.
    if let (Some(m), true) = (&master, master_open) {
        while poll(&mut [PollFd::new(m.as_fd(), PollFlags::POLLIN)], PollTimeout::ZERO).is_ok_and(|n| n > 0) {
            if !copy(m.as_fd(), &mut std::io::stdout()) {
                break;
            }
        }
    }
    drop(raw);
    Ok(exit)
}

/// The init's exit code if it has exited (128+N for a signal, as shells do).
fn reap(pid: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(128 + sig as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::Sys { op: format!("wait for init {pid}"), source: e.into() }),
        }
    }
}

/// Copy what is readable now; false at end of file or error.
fn copy(from: BorrowedFd<'_>, to: &mut impl Write) -> bool {
    let mut buf = [0u8; 16 * 1024];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => to.write_all(&buf[..n]).and_then(|_| to.flush()).is_ok(),
    }
}

fn copy_to(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut file = std::fs::File::from(match to.try_clone_to_owned() {
        Ok(f) => f,
        Err(_) => return false,
    });
    let mut buf = [0u8; 16 * 1024];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => file.write_all(&buf[..n]).is_ok(),
    }
}

/// The caller's terminal in raw mode for the proxy, restored on drop.
struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    fn enter(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}
