//! `--console-socket` receiver: a unix listener that takes the pty master the runtime sends over
//! SCM_RIGHTS, then reads what the container writes to its terminal.

use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// What the receiving thread hands back: the fd and the bytes sent with it.
type Received = Result<(OwnedFd, Vec<u8>), String>;

pub struct ConsoleSocket {
    pub path: PathBuf,
    receiver: Option<JoinHandle<Received>>,
}

impl ConsoleSocket {
    /// Listen on `path`; a thread waits (up to `timeout`) for one connection carrying one fd.
    pub fn listen(path: &Path, timeout: Duration) -> ConsoleSocket {
        let listener = UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener.set_nonblocking(true).expect("nonblocking listener");
        let receiver = std::thread::spawn(move || {
            let deadline = Instant::now() + timeout;
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if Instant::now() >= deadline {
                            return Err("no connection on the console socket".to_string());
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            stream.set_nonblocking(false).map_err(|e| e.to_string())?;
            stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 64 * 1024];
            // libcontainer::sys owns each received fd from the moment it arrives.
            let (n, mut owned) = libcontainer::sys::recv_with_fds(stream.as_fd(), &mut buf)
                .map_err(|e| format!("recvmsg on the console socket: {e}"))?;
            let payload = buf[..n].to_vec();
            if owned.is_empty() {
                return Err("console socket message carried no file descriptor".to_string());
            }
            Ok((owned.swap_remove(0), payload))
        });
        ConsoleSocket { path: path.to_path_buf(), receiver: Some(receiver) }
    }

    /// The pty master the runtime sent. Panics when none arrived.
    pub fn master(self) -> OwnedFd {
        self.received().0
    }

    /// The fd and the bytes that came with it (a seccomp agent gets the
    /// container's state this way). Panics when none arrived.
    pub fn received(mut self) -> (OwnedFd, Vec<u8>) {
        self.receiver.take().expect("receiver").join().expect("console thread").unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Read from a pty master until `done(text so far)` holds, the other side is closed (EIO) or `timeout`.
pub fn read_pty(master: &OwnedFd, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if done(&String::from_utf8_lossy(&out)) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("poll pty master: {e}"),
        }
        match nix::unistd::read(master.as_fd(), &mut buf) {
            Ok(0) | Err(Errno::EIO) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(e) => panic!("read pty master: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Write to a pty master (what the container reads from its terminal).
pub fn write_pty(master: &OwnedFd, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        off += nix::unistd::write(master.as_fd(), &data[off..]).expect("write pty master");
    }
}
