//! The container verbs, one file each, and the container's status.
//!
//! A container's status is derived from what is live, never from a stored
//! string:
//!
//! ```text
//!             create                    start                  exit / kill
//!  (none) ──────────────▶ creating ──▶ created ──────────▶ running ──────────▶ stopped
//!                                         │  pause ▲ resume   │ pause
//!                                         ▼        │          ▼
//!                                       paused (the cgroup is frozen)
//!          state dir made,    state.json   start.sock gone,      init gone (or a
//!          intent.json,       written,     init alive            zombie), or its pid
//!          no state.json      start.sock                         now names another
//!          yet, lock held     present,                           process; or no
//!                             init alive                         state.json and the
//!                                                                lock free (create
//!                                                                was killed)
//! ```
//!
//! `delete` removes the state directory from `created` or `stopped` (and
//! from `running` with `--force`, after killing the init). A create killed
//! before it saved `state.json` shows as `stopped` (its init died with it)
//! and `delete` removes what its `intent.json` says it was making.

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod foreground;
pub mod kill;
pub mod pause;
pub mod restore;
pub mod run;
pub mod start;
pub mod update;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use serde::Serialize;

use crate::state::{self, Saved};

/// The runtime-spec version roci implements.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] crate::spec::Error),
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Cgroups(#[from] crate::cgroups::Error),
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::Error),
    #[error(transparent)]
    Hook(#[from] crate::hooks::Error),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::Error),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::Error),
    #[error(transparent)]
    Selfexe(#[from] crate::selfexe::Error),
    #[error(transparent)]
    Channel(#[from] crate::process::channel::Error),
    #[error(transparent)]
    Attr(#[from] crate::attrs::Error),
    #[error(transparent)]
    NetDev(#[from] crate::netdev::Error),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{op}: {source}")]
    Sys { op: String, source: std::io::Error },
    /// The container's init reported a failure.
    #[error("{0}")]
    Init(String),
    /// A verb that does not apply in the container's status.
    #[error("{0}")]
    Status(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    ImageBundle(#[from] crate::image_bundle::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The state document of `roci state` (runc's fields and order), also the
/// base of what hooks get on stdin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The runtime-spec state given to hooks.
pub fn hook_state(id: &str, status: Status, pid: i32, bundle: &Path, annotations: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    }))
    .expect("state serialises")
}

/// Whether the init is alive: its pid exists, is not a zombie, and started
/// when the saved init did.
pub fn init_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match procfs::process::Process::new(pid).and_then(|p| p.stat()) {
        Ok(stat) => stat.starttime == start_time && stat.state != 'Z' && stat.state != 'X',
        Err(_) => false,
    }
}

/// Start time of a live process, to recognise it later.
pub fn start_time(pid: Pid) -> Result<u64> {
    procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.stat())
        .map(|s| s.starttime)
        .map_err(|e| Error::Sys { op: format!("read /proc/{pid}/stat"), source: std::io::Error::other(e) })
}

/// What `create` and `restore` save about a container from `bundle` whose init is `pid`: created
/// now by the current user, with the cgroup at `cgroup_path` (none for a rootless container the
/// host gave no cgroup to).
pub(crate) fn saved_state(
    id: &str,
    pid: Pid,
    bundle: &crate::spec::Bundle,
    annotations: BTreeMap<String, String>,
    cgroup_path: Option<crate::cgroups::CgroupPath>,
) -> Result<Saved> {
    Ok(Saved {
        version: state::STATE_VERSION,
        id: id.to_owned(),
        pid: pid.as_raw(),
        pid_start_time: start_time(pid)?,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        owner: user_name(nix::unistd::geteuid().as_raw()),
        annotations,
        cgroup_path,
        oci_version: bundle.spec.version().clone(),
        config: Saved::config_json(&bundle.raw)?,
    })
}

/// The status of a container from its state directory.
pub fn status(dir: &Path, saved: Option<&Saved>) -> Status {
    let Some(saved) = saved else {
        // create is still running, or died before finishing.
        return if state::is_locked(dir) { Status::Creating } else { Status::Stopped };
    };
    if !init_alive(saved.pid, saved.pid_start_time) {
        return Status::Stopped;
    }
    if saved.cgroup().ok().flatten().and_then(|m| m.is_frozen().ok()).unwrap_or(false) {
        return Status::Paused;
    }
    if dir.join(state::START_SOCKET).exists() {
        return Status::Created;
    }
    Status::Running
}

/// Everything `state`, `list` and `ps` show about one container.
pub fn report(root: &Path, id: &str) -> Result<Report> {
    let dir = root.join(id);
    if !dir.is_dir() {
        return Err(state::Error::NotExist(id.to_owned()).into());
    }
    let saved = state::load(&dir)?;
    let status = status(&dir, saved.as_ref());
    Ok(match saved {
        Some(s) => Report {
            oci_version: s.oci_version,
            id: s.id,
            pid: if status == Status::Stopped { 0 } else { s.pid },
            status,
            bundle: s.bundle,
            rootfs: s.rootfs,
            created: s.created,
            owner: s.owner,
            annotations: s.annotations,
        },
        // A create in progress or killed: what it recorded before making anything.
        None => {
            let intent = state::load_intent(&dir).ok().flatten();
            let owner = std::fs::metadata(&dir).map(|m| user_name(std::os::unix::fs::MetadataExt::uid(&m))).unwrap_or_default();
            Report {
                oci_version: OCI_VERSION.into(),
                id: id.to_owned(),
                pid: 0,
                status,
                bundle: intent.as_ref().map(|i| i.bundle.clone()).unwrap_or_default(),
                rootfs: intent.as_ref().map(|i| i.rootfs.clone()).unwrap_or_default(),
                created: intent.as_ref().map(|i| i.created.clone()).unwrap_or_default(),
                owner,
                annotations: intent.map(|i| i.annotations).unwrap_or_default(),
            }
        }
    })
}

/// Open a pidfd for the saved init, checking it is still that process
/// after the pidfd pins it.
pub fn init_pidfd(saved: &Saved) -> Option<OwnedFd> {
    let fd = crate::sys::pidfd_open(Pid::from_raw(saved.pid)).ok()?;
    init_alive(saved.pid, saved.pid_start_time).then_some(fd)
}

/// Pids of every process in the container's cgroup.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let dir = root.join(id);
    let saved = state::load(&dir)?.ok_or_else(|| state::Error::NotExist(id.to_owned()))?;
    let mut pids: Vec<i32> = match saved.cgroup()? {
        Some(m) => m.pids()?.into_iter().map(|p| p.as_raw()).collect(),
        // No cgroup (rootless): the init stands for the container.
        None => [saved.pid].into_iter().filter(|p| init_alive(*p, saved.pid_start_time)).collect(),
    };
    pids.sort_unstable();
    Ok(pids)
}

/// The user name for `uid` from the host's passwd, or the number.
///
/// Read from /etc/passwd directly, not through NSS, so a statically linked
/// roci needs no glibc NSS modules at run time.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| crate::user::name_in_passwd(&p, uid))
        .unwrap_or_else(|| uid.to_string())
}

/// Copy a container process's seccomp listener (fd number `fd` in `pidfd`'s
/// process) and hand it to `linux.seccomp.listenerPath` with the state.
pub(crate) fn pass_listener(
    pidfd: std::os::fd::BorrowedFd<'_>,
    fd: i32,
    config: &oci_spec::runtime::Spec,
    pid: Pid,
    state: &[u8],
) -> Result<()> {
    use std::os::fd::AsFd;
    let seccomp = config.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let path = seccomp
        .and_then(|s| s.listener_path().as_ref())
        .ok_or_else(|| Error::Usage("linux.seccomp.listenerPath: a notifying filter needs a listener path".into()))?;
    let metadata = seccomp.and_then(|s| s.listener_metadata().clone()).unwrap_or_default();
    let copy = crate::sys::seccomp::pidfd_getfd(pidfd, fd)
        .map_err(|source| Error::Sys { op: format!("copy seccomp listener from {pid}"), source })?;
    crate::seccomp::send_listener(copy.as_fd(), path, &metadata, pid, state)?;
    Ok(())
}

/// The container's cgroup manager, for verbs that cannot work without one.
pub(crate) fn need_cgroup(saved: &Saved, verb: &str) -> Result<Box<dyn crate::cgroups::Manager>> {
    saved.cgroup()?.ok_or_else(|| {
        Error::Status(format!("cannot {verb} container {}: it has no cgroup (it was created rootless without one)", saved.id))
    })
}

/// Apply `linux.resources` to a new cgroup, and always restrict device
/// access: to the config's rules, the standard devices and the container's
/// own device nodes.
pub(crate) fn limit(
    cg: &dyn crate::cgroups::Manager,
    linux: &oci_spec::runtime::Linux,
) -> std::result::Result<(), crate::cgroups::Error> {
    if let Some(res) = linux.resources() {
        cg.apply(res)?;
    }
    let rules = crate::cgroups::device_rules(
        linux.resources().as_ref().and_then(|r| r.devices().as_deref()).unwrap_or_default(),
        linux.devices().as_deref().unwrap_or_default(),
    )?;
    cg.set_devices(&rules)
}
