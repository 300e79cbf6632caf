//! The typed channel between the runtime and the container's init: a
//! `SOCK_SEQPACKET` socketpair carrying one JSON message per packet.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Runtime → init.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToInit {
    /// The init is in its cgroup; it may set itself up.
    Proceed,
    /// The runtime-namespace hooks ran; here is the state they were given,
    /// for the init's own hooks.
    HooksDone { state: String },
    /// The seccomp listener was copied and handed to its agent.
    ListenerTaken,
    /// `create` saved the container's state: the init no longer dies with
    /// the runtime (the hand-off).
    StateSaved,
    /// Execute the program (`run`, whose init waits for this on the channel
    /// instead of on `start.sock`): the channel closes at the `execve`, or
    /// `Failed` says why there was none.
    Start,
}

/// Init → runtime.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromInit {
    /// Namespaces and mounts are ready: run prestart and createRuntime hooks.
    RunHooks,
    /// Created: init now waits for `start`.
    Ready,
    /// A seccomp filter with a listener is installed; the listener is this
    /// fd number in the sender, for the runtime to copy with
    /// `pidfd_getfd` and hand to `linux.seccomp.listenerPath`. The sender
    /// keeps it open until `ListenerTaken`.
    SeccompListener { fd: i32 },
    /// Setup failed; the init exits after sending this.
    Failed { message: String },
    /// Answer to `StateSaved`: the parent-death signal is cleared, the
    /// runtime may exit.
    Detached,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("channel to container init: {0}")]
    Io(#[from] nix::Error),
    #[error("channel to container init: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("channel to container init: closed")]
    Closed,
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Make a connected pair: (runtime end, init end).
pub fn pair() -> Result<(Channel, Channel), Error> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), Error> {
        let data = serde_json::to_vec(msg)?;
        loop {
            match send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next message. Its length is read first (`MSG_PEEK|MSG_TRUNC`
    /// gives a packet's full length on a `SOCK_SEQPACKET` socket), so a
    /// message is read into a buffer of its size: the common ones fit on
    /// the stack. A buffer for the largest possible packet (256 KiB, zeroed
    /// for every message) cost 64 page faults, a memset and an munmap per
    /// message, ten times per `run`, half of them in the init.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let mut small = [0u8; 4096];
        let len = self.recv_into(&mut small, MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)?;
        if len == 0 {
            return Err(Error::Closed);
        }
        let mut large = Vec::new();
        let buf: &mut [u8] = if len <= small.len() {
            &mut small
        } else {
            large.resize(len, 0);
            &mut large
        };
        let n = self.recv_into(buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(Error::Closed);
        }
        Ok(serde_json::from_slice(&buf[..n])?)
    }

    /// One `recv`, retried on EINTR.
    fn recv_into(&self, buf: &mut [u8], flags: MsgFlags) -> Result<usize, Error> {
        loop {
            match recv(self.fd.as_raw_fd(), buf, flags | MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(n) => return Ok(n),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the other end is closed (its process has exited): a poll
    /// for hang-up (always reported) that does not wait.
    pub fn peer_closed(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLHUP)),
            _ => false,
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_fd().as_raw_fd()
    }

    /// The socket, lent for [`crate::sys::clone_process`] to close in the
    /// child (the parent's end must not stay open there).
    pub(crate) fn fd_mut(&mut self) -> &mut OwnedFd {
        &mut self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_close() {
        let (a, b) = pair().unwrap();
        a.send(&ToInit::HooksDone { state: "{}".into() }).unwrap();
        match b.recv::<ToInit>().unwrap() {
            ToInit::HooksDone { state } => assert_eq!(state, "{}"),
            other => panic!("{other:?}"),
        }
        b.send(&FromInit::Failed { message: "x".into() }).unwrap();
        assert!(matches!(a.recv::<FromInit>().unwrap(), FromInit::Failed { .. }));
        assert!(!a.peer_closed());
        drop(b);
        assert!(a.peer_closed());
        assert!(matches!(a.recv::<FromInit>(), Err(Error::Closed)));
    }

    /// A message larger than the stack buffer arrives whole, and the one
    /// after it too.
    #[test]
    fn large_message() {
        let (a, b) = pair().unwrap();
        let state = "x".repeat(100 * 1024);
        a.send(&ToInit::HooksDone { state: state.clone() }).unwrap();
        a.send(&ToInit::StateSaved).unwrap();
        match b.recv::<ToInit>().unwrap() {
            ToInit::HooksDone { state: got } => assert_eq!(got, state),
            other => panic!("{other:?}"),
        }
        assert!(matches!(b.recv::<ToInit>().unwrap(), ToInit::StateSaved));
    }
}
