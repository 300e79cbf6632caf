//! Control groups: one [`Manager`] per container, backed by cgroup v2, v1, or
//! both (hybrid hosts).
//!
//! The host's layout is detected once per process ([`detect`]). A container's
//! cgroup is named by one path (for example `/roci-test/c1`) that is the same
//! in every hierarchy; [`resolve_path`] turns `linux.cgroupsPath` into it the
//! way runc does. The resolved path is saved in the container's state so
//! later commands rebuild the same manager with [`manager`] without touching
//! the filesystem.
//!
//! Lifecycle of a container's cgroup, driven by `container::create` and
//! `container::delete`:
//!
//! ```text
//!   manager() ──create()──▶ exists ──apply()──▶ limited ──add_process()/clone_fd()──▶ populated
//!                                                                                   │
//!                                          destroy(): kill leftovers, rmdir leaf ◀──┘
//! ```

pub mod v1;
pub mod v2;

use std::os::fd::BorrowedFd;
use std::path::PathBuf;

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

/// Errors of the cgroup managers. Every variant names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("write {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: std::io::Error },
    #[error("create cgroup {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("open cgroup {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("no cgroup filesystem is mounted under /sys/fs/cgroup")]
    NoCgroupFs,
    #[error("{0} is not supported by this host's cgroups")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which cgroup versions the host has mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only cgroup2, mounted at `/sys/fs/cgroup`.
    Unified,
    /// v1 controllers under `/sys/fs/cgroup/<controller>` and a cgroup2 tree
    /// (usually `/sys/fs/cgroup/unified`) holding what v1 does not.
    Hybrid,
    /// Only v1 hierarchies.
    Legacy,
}

/// One mounted hierarchy, as found in `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted on the host, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    pub mountpoint: PathBuf,
    /// The cgroup path of the mount's root (4th field of mountinfo), usually `/`.
    pub root: String,
    /// v1 controllers (and `name=` hierarchies) on this mount; empty for cgroup2.
    pub controllers: Vec<String>,
    pub version: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The host's cgroup layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub mode: Mode,
    pub hierarchies: Vec<Hierarchy>,
}

/// What the container's `cgroup` mount shows: the host directory of the
/// container's cgroup in one hierarchy, and how to expose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSource {
    /// Subdirectory name under the mount destination (`cpu,cpuacct`, `memory`,
    /// `unified`, `systemd`); empty for a cgroup2-only host, where the
    /// destination itself is the cgroup2 mount.
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_dir: PathBuf,
    /// v1 controllers (`["cpu","cpuacct"]`, `["name=systemd"]`), empty for cgroup2.
    pub controllers: Vec<String>,
    pub version: Version,
}

/// A container's cgroup in every hierarchy the host has.
pub trait Manager {
    /// The container's cgroup path, the same in each hierarchy (`/a/b`).
    fn path(&self) -> &str;
    /// Create the cgroup directories (and their missing parents), enable the
    /// controllers the container needs in the parents (v2), and seed
    /// `cpuset.cpus`/`cpuset.mems` in new v1 cpuset directories.
    fn create(&mut self) -> Result<()>;
    /// Write `linux.resources` to the controller files.
    fn apply(&self, resources: &LinuxResources) -> Result<()>;
    /// Move a process into the cgroup in every hierarchy.
    fn add_process(&self, pid: Pid) -> Result<()>;
    /// On a cgroup2-only host, the open cgroup directory for
    /// `clone3(CLONE_INTO_CGROUP)`, available after [`Manager::create`].
    fn clone_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Every process in the cgroup and its descendants.
    fn pids(&self) -> Result<Vec<Pid>>;
    /// Kill what is still inside, then remove the cgroup directory (the leaf
    /// only; parents it created are left as runc leaves them), retrying while
    /// the kernel still reports it busy. Removing a cgroup that does not
    /// exist is not an error.
    fn destroy(&self) -> Result<()>;
    /// The container's cgroup as the `cgroup` mount type should show it.
    fn mount_sources(&self) -> Vec<MountSource>;
}

/// Read the host's cgroup layout from `/proc/self/mountinfo`, once per process.
pub fn detect() -> Result<&'static Layout> {
    todo!()
}

/// Resolve `linux.cgroupsPath` as runc's cgroupfs driver does: absolute paths
/// are taken as they are, relative ones (and an empty one, which becomes the
/// container id) are placed under the caller's own cgroup.
pub fn resolve_path(cgroups_path: Option<&str>, container_id: &str) -> Result<String> {
    todo!()
}

/// The manager for a resolved cgroup path on this host.
pub fn manager(path: &str) -> Result<Box<dyn Manager>> {
    todo!()
}
