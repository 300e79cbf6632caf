//! The container's console: a pty made inside the container, its master
//! handed to whoever listens on `--console-socket` (SCM_RIGHTS, as runc
//! does), its slave the init's stdio and controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::pty::{posix_openpt, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::rootfs::path::proc_fd_path;
use crate::sys;

#[derive(Debug, thiserror::Error)]
#[error("console: {op}: {source}")]
pub struct Error {
    pub op: &'static str,
    pub source: std::io::Error,
}

fn err(op: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error { op, source: e.into() }
}

/// Send `fd` over the unix socket `sock` with `name` as the payload.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, name: &str) -> Result<(), Error> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map_err(err("send pty master"))?;
    Ok(())
}

/// Receive one fd sent with [`send_fd`].
pub fn recv_fd(sock: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    let mut buf = [0u8; 4096];
    let (_, fds) = sys::recv_with_fds(sock, &mut buf).map_err(|source| Error { op: "receive pty master", source })?;
    fds.into_iter().next().ok_or_else(|| Error { op: "receive pty master", source: std::io::Error::other("no fd in message") })
}

/// Make the pty inside the container (after `pivot_root`, so it is the
/// container's devpts), send its master to `socket`, and make its slave the
/// controlling terminal and stdin/stdout/stderr (and `/dev/console`, for
/// the init).
pub fn setup_console(socket: BorrowedFd<'_>, size: Option<(u16, u16)>, bind_console: bool) -> Result<(), Error> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(err("open /dev/ptmx"))?;
    unlockpt(&master).map_err(err("unlockpt"))?;
    let slave = sys::open_pty_peer(master.as_fd()).map_err(|source| Error { op: "open pty slave", source })?;
    if let Some((rows, cols)) = size {
        sys::set_window_size(slave.as_fd(), rows, cols).map_err(|source| Error { op: "set console size", source })?;
    }
    if bind_console && Path::new("/dev/console").exists() {
        mount(Some(&proc_fd_path(slave.as_fd())), "/dev/console", None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(err("bind pty slave on /dev/console"))?;
    }
    send_fd(socket, master.as_fd(), "/dev/ptmx")?;
    drop(master);
    for target in 0..=2 {
        sys::dup2_stdio(slave.as_fd(), target).map_err(|source| Error { op: "dup pty slave onto stdio", source })?;
    }
    sys::set_controlling_terminal(slave.as_fd()).map_err(|source| Error { op: "set controlling terminal", source })?;
    Ok(())
}
