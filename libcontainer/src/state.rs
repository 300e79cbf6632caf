//! A container's saved state under the runtime root (`--root`).
//!
//! Layout of `<root>/<id>/`:
//! - `intent.json`: [`Intent`], what `create` is about to make outside this
//!   directory (the cgroup, an image bundle, the pid file), written
//!   atomically right after the directory is made and before any of it
//!   exists. A create killed before it saved `state.json` leaves a directory
//!   whose intent lets `delete` find and remove what it made.
//! - `state.json`: [`Saved`], written once `create` has finished, atomically
//!   (temp file and rename, see [`write_atomic`]).
//! - `start.sock`: the socket the container's init waits on until `start`;
//!   its presence while init lives is what makes the container `created`.
//!
//! The directory itself is the container's lock: every command that changes
//! the container takes an exclusive `flock` on it, so concurrent commands on
//! one container run one after the other. A command that waited for the lock
//! re-checks that the directory it locked is still the one at the path
//! (`delete` may have removed it meanwhile).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

pub const STATE_FILE: &str = "state.json";
pub const INTENT_FILE: &str = "intent.json";
pub const START_SOCKET: &str = "start.sock";
/// Version of [`Saved`]; bumped when its meaning changes.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container \"{0}\" does not exist")]
    NotExist(String),
    #[error("container with id \"{0}\" already exists")]
    Exists(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("parse {path}: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: state version {found} is not understood by this roci (expects {STATE_VERSION})")]
    Version { path: PathBuf, found: u32 },
}

pub type Result<T> = std::result::Result<T, Error>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_owned(), source }
}

/// What `create` records about a container for later commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub version: u32,
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of the init (field 22 of `/proc/PID/stat`), so a reused
    /// pid is never mistaken for the container.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 with nanoseconds, as runc prints it.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup path, resolved at create time; none for a
    /// rootless container the host gave no cgroup to.
    #[serde(default)]
    pub cgroup_path: Option<crate::cgroups::CgroupPath>,
    /// The runtime-spec version of the config.
    #[serde(default)]
    pub oci_version: String,
    /// The config the container was created from, as JSON text: only the
    /// commands that need it (start, exec, delete, ...) parse it, so
    /// `state` and `list` stay cheap.
    pub config: Box<serde_json::value::RawValue>,
}

impl Saved {
    /// The config the container was created from.
    pub fn spec(&self) -> Result<Spec> {
        crate::attrs::sched::decode(self.config.get().as_bytes(), "/process/scheduler")
            .map_err(|source| Error::Parse { path: PathBuf::from(format!("{}: config", self.id)), source })
    }

    /// Keep `data` (config.json's content) as the container's config.
    pub fn config_json(data: &[u8]) -> Result<Box<serde_json::value::RawValue>> {
        let text = String::from_utf8_lossy(data).into_owned();
        serde_json::value::RawValue::from_string(text)
            .map_err(|source| Error::Parse { path: PathBuf::from("config.json"), source })
    }

    /// Replace the kept config (after `update`).
    pub fn set_spec(&mut self, spec: &Spec) {
        self.config = serde_json::value::to_raw_value(spec).expect("a config serialises");
    }

    /// The manager of the container's cgroup, if it has one.
    pub fn cgroup(&self) -> std::result::Result<Option<Box<dyn crate::cgroups::Manager>>, crate::cgroups::Error> {
        self.cgroup_path.as_ref().map(crate::cgroups::manager).transpose()
    }
}

/// What `create` records before it makes anything outside the state
/// directory, so a create that is killed half-way leaves a container that
/// `list` shows and `delete` removes with all it made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    pub version: u32,
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, when the create began.
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The cgroup the create makes (it may not exist yet, or only in some
    /// hierarchies).
    #[serde(default)]
    pub cgroup_path: Option<crate::cgroups::CgroupPath>,
    /// `--pid-file`, absolute: a killed create may leave its temp file.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// The container has no mount namespace of its own: its rootfs is bound in the runtime's, and
    /// a killed create leaves that bind behind for `delete` to detach.
    #[serde(default)]
    pub shared_rootfs: bool,
}

/// A container's directory, locked for the lifetime of this value.
pub struct Dir {
    pub path: PathBuf,
    lock: Flock<OwnedFd>,
}

impl Dir {
    /// Create `<root>/<id>` (and `root` if needed) and lock it. Fails if the
    /// container already exists.
    pub fn create(root: &Path, id: &str) -> Result<Dir> {
        std::fs::DirBuilder::new().recursive(true).mode(0o711).create(root).map_err(io("create state root", root))?;
        let path = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists(id.to_owned())),
            Err(e) => return Err(io("create state dir", &path)(e)),
        }
        let file = File::open(&path).map_err(io("open state dir", &path))?;
        let lock = Flock::lock(OwnedFd::from(file), FlockArg::LockExclusive)
            .map_err(|(_, e)| io("lock state dir", &path)(std::io::Error::from(e)))?;
        Ok(Dir { path, lock })
    }

    /// Open and lock an existing container's directory, waiting for other
    /// commands on the same container to finish.
    pub fn open(root: &Path, id: &str) -> Result<Dir> {
        let path = root.join(id);
        loop {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotExist(id.to_owned())),
                Err(e) => return Err(io("open state dir", &path)(e)),
            };
            let lock = Flock::lock(OwnedFd::from(file), FlockArg::LockExclusive)
                .map_err(|(_, e)| io("lock state dir", &path)(std::io::Error::from(e)))?;
            // The holder before us may have deleted the directory.
            let locked = nix::sys::stat::fstat(lock.as_fd()).map_err(|e| io("stat state dir", &path)(e.into()))?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == locked.st_ino && now.dev() == locked.st_dev => return Ok(Dir { path, lock }),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotExist(id.to_owned())),
                Err(e) => return Err(io("stat state dir", &path)(e)),
            }
        }
    }

    /// The directory's fd, for `*at` calls from inside the container's init.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.lock.as_fd()
    }

    /// The directory's fd, lent for [`crate::sys::clone_process`] to close
    /// in the container's init (which must not hold the lock).
    pub(crate) fn fd_mut(&mut self) -> &mut OwnedFd {
        &mut self.lock
    }

    pub fn save(&self, saved: &Saved) -> Result<()> {
        write_atomic(&self.path, STATE_FILE, &serde_json::to_vec(saved).expect("state serialises"))
    }

    /// [`save`](Self::save) in two steps: the state is written to its temp
    /// file now, and put in place by [`Staged::commit`]. `create` writes it
    /// while the container's init sets itself up, so that the file's
    /// creation (an inode allocation, which on ext4 without a journal scans
    /// past every inode deleted in the last 30 seconds: up to a millisecond
    /// on a machine that starts containers in a loop) runs beside the init's
    /// work instead of after it.
    pub fn stage(&self, saved: &Saved) -> Result<Staged> {
        let (tmp, dest) = (atomic_temp(&self.path, STATE_FILE), self.path.join(STATE_FILE));
        write_file(&tmp, &serde_json::to_vec(saved).expect("state serialises"))?;
        Ok(Staged { tmp, dest })
    }

    pub fn load(&self) -> Result<Option<Saved>> {
        load(&self.path)
    }

    /// Record what `create` is about to make (before it makes it).
    pub fn save_intent(&self, intent: &Intent) -> Result<()> {
        write_atomic(&self.path, INTENT_FILE, &serde_json::to_vec(intent).expect("intent serialises"))
    }

    pub fn load_intent(&self) -> Result<Option<Intent>> {
        load_intent(&self.path)
    }

    /// Remove the directory and everything in it; the lock goes with it.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path).map_err(io("remove state dir", &self.path))
    }
}

/// Read `state.json` without taking the lock (it is replaced atomically, so
/// a reader sees the old or the new file). `None` while `create` is still
/// running or if it died half-way.
pub fn load(dir: &Path) -> Result<Option<Saved>> {
    read_versioned(dir.join(STATE_FILE), |s: &Saved| s.version)
}

/// Read `intent.json`; `None` when the create was killed before writing
/// it (then it had made nothing outside the directory).
pub fn load_intent(dir: &Path) -> Result<Option<Intent>> {
    read_versioned(dir.join(INTENT_FILE), |i: &Intent| i.version)
}

/// A JSON file of this module's, `None` when it does not exist; refused
/// when its `version` is not [`STATE_VERSION`].
fn read_versioned<T: serde::de::DeserializeOwned>(path: PathBuf, version: impl Fn(&T) -> u32) -> Result<Option<T>> {
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let value: T = serde_json::from_slice(&data).map_err(|source| Error::Parse { path: path.clone(), source })?;
    match version(&value) {
        STATE_VERSION => Ok(Some(value)),
        found => Err(Error::Version { path, found }),
    }
}

/// Whether some command holds the container's lock right now.
pub fn is_locked(dir: &Path) -> bool {
    let Ok(file) = File::open(dir) else { return false };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_unlocked_on_drop) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// Write `dir/name` through a temp file and a rename, so that readers, and
/// a command run after the writer was killed, see either the old or the
/// whole new content.
///
/// Not fsync'd: what the runtime's files describe (processes, cgroups,
/// namespaces) does not outlive the machine, so a file torn by a machine
/// crash names nothing that still exists (`delete` removes such a
/// container), while two fsyncs would cost every `create` 2 to 10 ms on a
/// disk-backed `--root` (a `/run` that is not a tmpfs). runc and crun do
/// not sync their state either.
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = atomic_temp(dir, name);
    write_file(&tmp, data)?;
    Staged { tmp, dest: dir.join(name) }.commit()
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io("create", path))?;
    f.write_all(data).map_err(io("write", path))
}

/// A file written to its temp name ([`Dir::stage`]), not yet in place; a
/// create killed before [`commit`](Self::commit) leaves it in the state
/// directory, which `delete` removes whole.
#[derive(Debug)]
#[must_use = "the state is not saved until it is committed"]
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
}

impl Staged {
    /// Put the file in place (a rename: readers see the old or the new one).
    pub fn commit(self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(io("rename", &self.dest))
    }
}

/// The temp file [`write_atomic`] writes `dir/name` through (left behind
/// when the writer is killed before the rename).
pub fn atomic_temp(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp"))
}

/// The ids of the containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(io("read", root)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("read", root))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if let Some(name) = entry.file_name().to_str() {
                if crate::spec::validate_id(name).is_ok() {
                    ids.push(name.to_owned());
                }
            }
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_exclusive_and_open_finds_it() {
        let root = tempfile::tempdir().unwrap();
        let d = Dir::create(root.path(), "c1").unwrap();
        assert!(matches!(Dir::create(root.path(), "c1"), Err(Error::Exists(_))));
        assert!(is_locked(&d.path));
        drop(d);
        assert!(!is_locked(&root.path().join("c1")));
        let d = Dir::open(root.path(), "c1").unwrap();
        assert!(d.load().unwrap().is_none());
        assert!(d.load_intent().unwrap().is_none());
        let intent = Intent {
            version: STATE_VERSION,
            id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: String::new(),
            annotations: BTreeMap::new(),
            cgroup_path: Some(crate::cgroups::CgroupPath::new("/x/c1").unwrap()),
            pid_file: None,
            shared_rootfs: false,
        };
        d.save_intent(&intent).unwrap();
        assert_eq!(d.load_intent().unwrap().unwrap().cgroup_path, intent.cgroup_path);
        d.remove().unwrap();
        assert!(matches!(Dir::open(root.path(), "c1"), Err(Error::NotExist(_))));
        assert_eq!(list_ids(root.path()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one").unwrap();
        write_atomic(dir.path(), "f", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
