//! libimage: roci's images. The content store, pulls from registries,
//! unpacking layers, the copy-on-write snapshots containers run on, and image
//! configurations turned into a container's `config.json`; used by the
//! `roci-image` binary (and the CRI server), never by `roci` itself, which
//! links no async runtime, TLS or registry client. The kernel work (the
//! overlay mount, path resolution inside a rootfs) goes through
//! libcontainer, as does removing a container's bundle on `delete`
//! (`libcontainer::image_bundle`, which owns the `bundles/` and
//! `snapshots/<id>` layout below).
//!
//! Pulls are async ([`pull::pull_async`], [`manager::ImageRoot::pull_async`])
//! and run on any tokio runtime, current-thread or multi-threaded: no lock is
//! waited for, and no file written, on a runtime thread (see [`store`]).
//! Everything else is synchronous; an async caller runs it with
//! `spawn_blocking`.
//!
//! Layout under the image root (default `/var/lib/roci`):
//! ```text
//! blobs/<alg>/<hex>           content store: verified blobs, named by digest (store.rs)
//! ingest/<alg>-<hex>.tmp      a blob being written, hashed as it is written (store.rs)
//! ingest/<alg>-<hex>.lock     held by the one writer of that blob (store.rs)
//! layers/<chain-hex>/fs       one unpacked layer per chain ID, shared by every image (unpack.rs)
//! layers/<chain-hex>/meta.json  its diff ID, parent chain ID, size on disk (unpack.rs)
//! layers/.<chain-hex>.tmp     a layer being unpacked, renamed to <chain-hex> when complete (unpack.rs)
//! layers/.<chain-hex>.lock    held by the one unpacker (or remover) of that layer (unpack.rs)
//! images/<name-hex>.json      an image reference → manifest digest, config digest, chain IDs (images.rs)
//! snapshots/<id>/{upper,work} a container's writable layer and overlay work dir (snapshot.rs)
//! snapshots/<id>/meta.json    the chain IDs the snapshot stacks, so pruning can see what is in use (snapshot.rs)
//! bundles/<id>/               the bundle of a container run from an image (manager.rs)
//! ```
//! Every file that other commands read is written to a temp file, fsync'd and
//! renamed, so a crash at any point leaves either the old or the new content.
//! Lock files are removed by their holder; a waiter that finds the file it
//! locked unlinked or replaced tries again (see [`PathLock`]).

#![deny(unsafe_code)]

pub mod convert;
pub mod digest;
pub mod images;
pub mod manager;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod snapshot;
pub mod store;
pub mod unpack;

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Errors of every image module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or kernel operation failed: "{op} {path}: {source}".
    #[error("{op} {path}: {source}")]
    Io {
        op: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A malformed digest string; the payload names it and says what is wrong.
    #[error("invalid digest {0}")]
    Digest(String),
    /// Content did not match what it was promised to be (digest, size, chain ID).
    #[error("{what}: expected {expected}, got {actual}")]
    Mismatch { what: String, expected: String, actual: String },
    /// A layer archive entry was refused (it escapes the layer, or is malformed).
    #[error("unpack layer entry {entry:?}: {reason}")]
    Unpack { entry: String, reason: String },
    /// A layer blob whose media type roci cannot unpack.
    #[error("unsupported layer media type {0:?}")]
    MediaType(String),
    /// A JSON file (layer or snapshot metadata) could not be read or written.
    #[error("{op} {path}: {source}")]
    Json {
        op: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A caller-supplied name or argument that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// An image reference that does not parse; names the reference and what is wrong with it.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The registries configuration file could not be read.
    #[error("read registries config {path}: {source}")]
    RegistriesConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The registries configuration file is malformed.
    #[error("parse registries config {path}: {reason}")]
    RegistriesConfigParse { path: PathBuf, reason: String },
    /// A credentials file (registries.json `auths`, auth.json, ~/.docker/config.json) is unusable.
    #[error("read registry credentials from {path}: {reason}")]
    AuthFile { path: PathBuf, reason: String },
    /// Removing a container's bundle (and its snapshot) failed.
    #[error(transparent)]
    Bundle(#[from] libcontainer::image_bundle::Error),
    /// An image configuration that cannot be made into a container's config.
    #[error(transparent)]
    Convert(#[from] convert::Error),
    /// Work handed to the blocking thread pool did not finish (it panicked, or
    /// the async runtime is shutting down).
    #[error("{op}: the blocking task failed: {reason}")]
    Blocking { op: String, reason: String },
    /// Pulling part of an image failed: "pull {object} of {reference} from {registry}: {reason}".
    #[error("pull {object} of {reference} from {registry}: {reason}")]
    Pull { reference: String, registry: String, object: String, reason: String },
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(op: impl Into<String>, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op: op.into(), path: path.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The cgroup parent of a container run from an image without
/// `--cgroup-parent`: its `cgroupsPath` is `/roci/ID`, in every hierarchy.
///
/// runc (and so roci for a bundle) resolves an empty or relative
/// `cgroupsPath` under the caller's own cgroup: a container started from a
/// login shell or a service would be accounted to that shell's or service's
/// cgroup, share its limits, and be killed with it when it stops. A
/// user-facing `run` gives containers a parent of the runtime's own, as
/// Docker does (`/docker`) and Podman (`machine.slice`, or `/libpod_parent`
/// with cgroupfs). The parent is created on first use and left in place
/// (empty) when the last container goes, as theirs are.
pub const DEFAULT_CGROUP_PARENT: &str = "/roci";

/// An exclusive `flock` on a lock file that is removed when released.
///
/// Removing lock files keeps `ingest/` and `layers/` clean, but needs care: a
/// waiter may lock a file that its holder has unlinked in the meantime. So
/// after locking, the path is checked to still name the locked inode, and if
/// not the waiter starts again on the new file.
pub(crate) struct PathLock {
    path: PathBuf,
    // Dropped (unlocked) after the file is unlinked, in Drop.
    lock: Option<Flock<File>>,
}

impl PathLock {
    /// Block until the lock at `path` is ours.
    pub(crate) fn acquire(path: &Path) -> Result<PathLock> {
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| Error::io("create lock file", path, e))?;
            let lock = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| Error::io("lock", path, io::Error::from(errno)))?;
            let held = lock.metadata().map_err(|e| Error::io("stat lock file", path, e))?;
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(PathLock { path: path.to_owned(), lock: Some(lock) });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat lock file", path, e)),
            }
        }
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, so that nobody locks a file
        // that is about to disappear without noticing (see `acquire`).
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "remove lock file");
        }
        drop(self.lock.take());
    }
}

/// Write `data` to `path` atomically: a temp file beside it, fsync, rename,
/// fsync of the directory. The temp file's name is the writer's own
/// (`<name>.<pid>-<n>.tmp`): two pulls of one image, in one process or two,
/// write its record at the same time.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}-{}.tmp", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(name);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(data).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("rename {} to", tmp.display()), path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Run blocking work (file I/O, waiting for a `flock`, a helper process) on
/// tokio's blocking pool, so that no runtime thread waits for it.
pub(crate) async fn blocking<T, F>(op: String, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Blocking { op, reason: e.to_string() })?
}

/// fsync a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
}

/// `mkdir -p`, with the error naming the directory.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}
