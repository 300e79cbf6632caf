//! The daemon's Unix socket: one roci-cri per socket path, a stale socket replaced, mode 0660.
//!
//! Ownership of a socket path is an exclusive `flock` on `<socket>.lock`, held for the daemon's
//! lifetime and released by the kernel when the process ends however it ends. Holding the lock is
//! what allows removing an existing socket: without it a second roci-cri started by mistake would
//! unlink the socket of the one serving kubelet, which would keep running unreachable. The lock
//! file itself stays (removing it would race with a daemon that just opened it).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Group read-write as containerd's socket: kubelet runs as root, a group can be given access.
const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("create the socket directory {dir}: {source}")]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("open the socket lock {path}: {source}")]
    OpenLock { path: PathBuf, source: std::io::Error },
    #[error("socket {socket}: another roci-cri is serving it (it holds {lock})")]
    InUse { socket: PathBuf, lock: PathBuf },
    #[error("lock {path}: {source}")]
    Lock { path: PathBuf, source: nix::Error },
    #[error("socket {path}: exists and is not a socket; not removing it")]
    NotASocket { path: PathBuf },
    #[error("remove the stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: std::io::Error },
    #[error("bind {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("chmod {mode:o} {path}: {source}")]
    Chmod { path: PathBuf, mode: u32, source: std::io::Error },
}

/// A bound socket and the lock that makes it this process's.
pub struct Listener {
    pub listener: tokio::net::UnixListener,
    pub path: PathBuf,
    /// Released (by the kernel, if need be) when the daemon ends.
    pub lock: Flock<File>,
}

impl Listener {
    /// Take the socket path: lock it, remove a stale socket, bind, set the mode. Must be called
    /// inside the tokio runtime.
    pub fn bind(path: &Path) -> Result<Listener, SocketError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| SocketError::CreateDir { dir: dir.into(), source })?;
        }
        let lock_path = lock_path(path);
        let lock = lock_exclusive(&lock_path).map_err(|e| match e {
            LockError::Held => SocketError::InUse { socket: path.into(), lock: lock_path.clone() },
            LockError::Open(source) => SocketError::OpenLock { path: lock_path.clone(), source },
            LockError::Lock(source) => SocketError::Lock { path: lock_path.clone(), source },
        })?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                tracing::info!(socket = %path.display(), "removing a stale socket");
                std::fs::remove_file(path).map_err(|source| SocketError::RemoveStale { path: path.into(), source })?;
            }
            Ok(_) => return Err(SocketError::NotASocket { path: path.into() }),
            Err(_) => {}
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(|source| SocketError::Bind { path: path.into(), source })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(|source| SocketError::Chmod {
            path: path.into(),
            mode: SOCKET_MODE,
            source,
        })?;
        Ok(Listener { listener, path: path.into(), lock })
    }
}

/// Why [`lock_exclusive`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another roci-cri holds it")]
    Held,
    #[error("open the lock file: {0}")]
    Open(std::io::Error),
    #[error("lock: {0}")]
    Lock(nix::Error),
}

/// Take an exclusive `flock` on the file `path` (created if missing), without waiting: held until
/// the returned lock is dropped or the process ends, however it ends.
pub fn lock_exclusive(path: &Path) -> Result<Flock<File>, LockError> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(LockError::Open)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::Error::EWOULDBLOCK => LockError::Held,
        source => LockError::Lock(source),
    })
}

fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_owner_stale_sockets_replaced_files_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/cri.sock");

        let first = Listener::bind(&path).expect("first bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660);
        let e = Listener::bind(&path).err().expect("a second owner").to_string();
        assert!(e.contains("another roci-cri is serving it"), "{e}");
        assert!(path.exists(), "the refused bind left the first socket alone");
        drop(first);

        // The first owner is gone but its socket file is left, as after a crash.
        assert!(std::fs::symlink_metadata(&path).expect("stale socket").file_type().is_socket());
        let second = Listener::bind(&path).expect("bind over a stale socket");
        drop(second);

        std::fs::remove_file(&path).expect("remove");
        std::fs::write(&path, "data").expect("a regular file");
        let e = Listener::bind(&path).err().expect("not a socket").to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "data");
    }
}
