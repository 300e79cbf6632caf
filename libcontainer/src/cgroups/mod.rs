//! Control groups: one [`Manager`] per container, backed by cgroup v2, v1, or
//! both (hybrid hosts).
//!
//! The host's layout is detected once per process ([`detect`], from
//! `/proc/self/mountinfo`). [`resolve_path`] turns `linux.cgroupsPath` into a
//! [`CgroupPath`] the way runc's cgroupfs driver does: usually one path (for
//! example `/roci-test/c1`) that is the same in every hierarchy, but a
//! relative `cgroupsPath` is placed under the caller's own cgroup *in each
//! hierarchy*, and on a v1 or hybrid host those can differ (this host's shell
//! is in `memory:/process_api/<id>` and `/` elsewhere). The resolved path is
//! saved in the container's state (it serialises as a plain string in the
//! usual case) so later commands rebuild the same manager with [`manager`]
//! without touching the filesystem.
//!
//! Code map:
//! - [`layout`]: mountinfo and `/proc/self/cgroup` parsing, [`Layout`].
//! - [`path`]: `linux.cgroupsPath` → [`CgroupPath`].
//! - [`manager`](self::manager()) and `fsmanager.rs`: the one [`Manager`]
//!   implementation, holding the container's directory in each hierarchy and
//!   sending each `linux.resources` controller to the hierarchy that has it.
//! - `v1/`, `v2/`: one file per controller, each writing (and reading the
//!   statistics of) one controller's files in one directory; plus creating,
//!   freezing and killing per version. `v2/devices.rs` generates and attaches
//!   the BPF device filter (the `bpf(2)` calls are in `sys/bpf.rs`).
//! - [`devices`](mod@devices): device rules, runc's default allow list, and
//!   the emulator both versions apply rules through.
//! - `validate.rs`: the checks of `linux.resources` made before any write
//!   ([`validate_resources`]); `blockio.rs`: what v1 `blkio` and v2 `io`
//!   share (weight conversion, device checks against `/sys/dev/block`).
//! - `sub.rs`: `exec --cgroup` ([`SubCgroup`], [`Manager::sub_cgroup`]).
//! - [`stats`](mod@stats): the `roci events` statistics (runc's JSON shape).
//! - [`oom`](mod@oom): a pollable notifier of OOM kills.
//! - `files.rs`: every read, write, mkdir and rmdir of a cgroup file, logged.
//!
//! Which hierarchy serves a controller (for device rules, freezing and
//! statistics too): a v1 hierarchy that has it; otherwise
//! the cgroup2 tree, if the controller is listed in the container's
//! `cgroup.controllers` there. On a hybrid host that means the v2 tree serves
//! what no v1 hierarchy has (on this project's test host: hugetlb), which
//! runc does not do (it fails on a missing v1 hugetlb mount). Asking for a
//! controller nothing serves is an error naming the field; so is `network`
//! (v1 `net_cls`/`net_prio`, which cgroup v2 lacks) on a v1 or hybrid host
//! without those hierarchies, as in runc. On a cgroup2-only host `network`
//! is ignored with a warning, as runc's cgroup2 manager ignores it.
//!
//! Lifecycle of a container's cgroup, driven by `container::create` and
//! `container::delete`:
//!
//! ```text
//!   manager() ──create()──▶ exists ──apply(), set_devices()──▶ limited ──add_process()/entry()───▶ populated
//!                                                                                                  │
//!            freeze()/thaw() (pause, resume), apply()/set_devices() (update), stats(), oom_notifier()
//!                                                                                                  │
//!                                                         destroy(): kill leftovers, rmdir leaf ◀──┘
//! ```
//!
//! What this module writes outside the container's own directories, and
//! nothing else: `cgroup.subtree_control` of v2 ancestors (only controllers
//! that are missing there: all available ones on a cgroup2-only host, as runc
//! does, so containers get accounting; on a hybrid host only a controller a
//! resource asks for), and `cpuset.cpus`/`cpuset.mems` of v1 cpuset
//! directories it created itself (a new cpuset is empty and takes no tasks).

mod blockio;
mod controllers;
pub mod devices;
mod entry;
mod files;
mod fsmanager;
pub mod layout;
pub mod oom;
pub mod path;
pub mod stats;
mod sub;
pub mod v1;
pub mod v2;
mod validate;

#[cfg(test)]
mod host_tests;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use devices::{device_rules, Access, DeviceKind, DeviceRule, DEFAULT_ALLOWED};
pub use entry::Entry;
pub use layout::{Hierarchy, Layout, Mode, Version};
pub use oom::{OomEvents, OomNotifier};
pub use path::CgroupPath;
pub use stats::Stats;
pub use sub::{SubCgroup, SubCgroupDirs};
pub use validate::validate as validate_resources;

/// Errors of the cgroup managers. Every variant names the file, directory or
/// config field.
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
    #[error("remove cgroup {path}: still busy after {waited:?}, processes left: {pids:?}")]
    Busy { path: PathBuf, waited: Duration, pids: Vec<i32> },
    #[error("open cgroup {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("kill process {pid} of cgroup {path}: {source}")]
    Kill { pid: i32, path: PathBuf, source: nix::Error },
    #[error("parse {path} line {line}: {reason}")]
    Parse { path: PathBuf, line: usize, reason: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A resource asks for a controller no hierarchy of this host serves for
    /// the container, e.g. `linux.resources.memory.limit: memory controller
    /// not available in /sys/fs/cgroup/c1 (cgroup.controllers: cpu pids)`.
    #[error("{field}: {controller} controller not available {place}")]
    ControllerUnavailable { field: String, controller: String, place: String },
    /// A write the kernel refused, with the config field it came from, e.g.
    /// `linux.resources.cpu.quota: write "500 100000" to
    /// /sys/fs/cgroup/c1/cpu.max: Invalid argument (os error 22)`.
    #[error("{field}: {source}")]
    Field { field: String, source: Box<Error> },
    /// A system call on a cgroup other than a file read or write (`bpf`,
    /// `eventfd`, `inotify`), e.g. "attach the device filter
    /// (BPF_PROG_ATTACH) on cgroup /sys/fs/cgroup/c1: ...".
    #[error("{op} on cgroup {path}: {source}")]
    Syscall { op: String, path: PathBuf, source: std::io::Error },
    /// The kernel did not reach a state in time, e.g. "freeze
    /// /sys/fs/cgroup/freezer/c1/freezer.state: still FREEZING after 10s".
    #[error("{op} {path}: still {state} after {waited:?}")]
    Timeout { op: &'static str, path: PathBuf, waited: Duration, state: String },
    #[error("no cgroup filesystem is mounted (no cgroup or cgroup2 entry in {0})")]
    NoCgroupFs(PathBuf),
    #[error("{0} is not supported by this host's cgroups")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The error of a write that came from the config field `field`, e.g. a
    /// value the kernel refused with `EINVAL`.
    pub(crate) fn in_field(self, field: &str) -> Error {
        Error::Field { field: field.to_owned(), source: Box::new(self) }
    }
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
    /// The container's cgroup path, as resolved by [`resolve_path`]; save it
    /// in the container's state to rebuild the manager with [`manager`].
    fn path(&self) -> &CgroupPath;
    /// Create the cgroup directories (and their missing parents), enable the
    /// controllers in the v2 parents (cgroup2-only hosts), seed
    /// `cpuset.cpus`/`cpuset.mems` in new v1 cpuset directories. On error,
    /// removes the directories it created.
    fn create(&mut self) -> Result<()>;
    /// Write `linux.resources` to the controller files. Zero or absent values
    /// are left alone, so this also serves `update`. Values are checked
    /// first ([`validate_resources`], and `blockIO` devices against
    /// `/sys/dev/block`), so a bad value changes nothing. Not handled here:
    /// `devices` (see [`Manager::set_devices`]). `network` on a
    /// cgroup2-only host is ignored with a warning, as runc ignores it.
    fn apply(&self, resources: &LinuxResources) -> Result<()>;
    /// Make `rules` (from [`device_rules`]) the container's device access:
    /// the v1 devices controller where the host has one (v1 and hybrid
    /// hosts, as runc), else a BPF device filter on the cgroup2 directory.
    /// Replaces what an earlier call set (`update`) without a moment of
    /// deny-all or of no filter.
    fn set_devices(&self, rules: &[DeviceRule]) -> Result<()>;
    /// Freeze every process of the cgroup (`pause`) and wait until the
    /// kernel reports it frozen; on failure the cgroup is thawed again.
    /// The v1 freezer where the host has one, else `cgroup.freeze`.
    fn freeze(&self) -> Result<()>;
    /// Thaw the cgroup (`resume`).
    fn thaw(&self) -> Result<()>;
    /// Whether the cgroup itself is frozen (not merely an ancestor).
    fn is_frozen(&self) -> Result<bool>;
    /// The statistics `roci events` reports, from every controller the host
    /// serves the container with.
    fn stats(&self) -> Result<Stats>;
    /// How many processes of the cgroup (and below) the OOM killer killed.
    fn oom_kill_count(&self) -> Result<u64>;
    /// A pollable notifier of OOM events in the cgroup.
    fn oom_notifier(&self) -> Result<OomNotifier>;
    /// Move a process into the cgroup in every hierarchy (harmless when it is
    /// already there).
    fn add_process(&self, pid: Pid) -> Result<()>;
    /// What a new container process enters the cgroup through, in every
    /// hierarchy, without the runtime moving it by pid (see [`Entry`]):
    /// the directories must exist ([`Manager::create`]); a new v1 cpuset
    /// directory is seeded as for [`Manager::add_process`].
    fn entry(&self) -> Result<Entry>;
    /// `exec --cgroup`: the existing sub-cgroup `sub` names below the
    /// container's cgroup, in every hierarchy, for an exec'd process to
    /// join ([`SubCgroupDirs::add_process`], or
    /// [`SubCgroupDirs::entry`]). Errors name
    /// `--cgroup`: a directory that does not exist, a controller no v1
    /// hierarchy has, a controller form on a cgroup2-only host.
    fn sub_cgroup(&self, sub: &SubCgroup) -> Result<SubCgroupDirs>;
    /// Every process in the cgroup and its descendants, sorted; empty when
    /// the cgroup does not exist.
    fn pids(&self) -> Result<Vec<Pid>>;
    /// Kill what is still inside (`cgroup.kill`, or SIGKILL to each process
    /// of the frozen cgroup), then remove the cgroup directory and any child
    /// cgroups made inside it, deepest first, retrying for a few seconds while
    /// the kernel still reports it busy. The parents are left as runc leaves
    /// them. Removing a cgroup that does not exist is not an error.
    fn destroy(&self) -> Result<()>;
    /// The container's cgroup as the `cgroup` mount type should show it.
    fn mount_sources(&self) -> Vec<MountSource>;
}

/// Where the kernel lists this process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Where the kernel lists this process's cgroups.
pub const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";

/// Read the host's cgroup layout from `/proc/self/mountinfo`, once per
/// process. A failure is not cached: the next call reads again.
pub fn detect() -> Result<&'static Layout> {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    if let Some(layout) = LAYOUT.get() {
        return Ok(layout);
    }
    let text = files::read_path(std::path::Path::new(MOUNTINFO))?;
    let layout = Layout::from_mountinfo(&text, std::path::Path::new(MOUNTINFO))?;
    tracing::debug!(mode = ?layout.mode, hierarchies = layout.hierarchies.len(), "cgroup layout detected");
    Ok(LAYOUT.get_or_init(|| layout))
}

/// Resolve `linux.cgroupsPath` as runc's cgroupfs driver does: an absolute
/// path is taken as it is (cleaned; `..` may not climb above `/`), a relative
/// one (and an empty one, which becomes the container id) is placed under the
/// caller's own cgroup in each hierarchy, read from `/proc/self/cgroup`.
/// Errors name the field `linux.cgroupsPath`.
pub fn resolve_path(cgroups_path: Option<&str>, container_id: &str) -> Result<CgroupPath> {
    let layout = detect()?;
    let own = if path::needs_own_cgroup(cgroups_path) {
        files::read_path(std::path::Path::new(PROC_SELF_CGROUP))?
    } else {
        String::new()
    };
    layout.resolve_path(cgroups_path, container_id, &own)
}

/// The manager for a resolved cgroup path on this host. Touches nothing.
pub fn manager(path: &CgroupPath) -> Result<Box<dyn Manager>> {
    detect()?.manager(path)
}

impl Layout {
    /// The manager for `path` in this layout (a test layout may point at
    /// temporary directories). Touches nothing.
    pub fn manager(&self, path: &CgroupPath) -> Result<Box<dyn Manager>> {
        Ok(Box::new(fsmanager::FsManager::new(self, path)?))
    }
}
