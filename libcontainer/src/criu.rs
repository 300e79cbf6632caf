//! CRIU (checkpoint/restore in userspace), driven as a child process.
//!
//! `checkpoint` runs `criu dump` (or `pre-dump`) on the container's init
//! tree and `restore` runs `criu restore`; this module builds their
//! command lines from plain data ([`Dump`], [`Restore`]: unit-tested below),
//! finds the binary, runs it and turns a failure into an error that quotes
//! CRIU's own log.
//!
//! Why the command line and not CRIU's RPC mode (`criu swrk`, which runc
//! uses): the RPC speaks protobuf, and this crate keeps protobuf out
//! (STYLE.md). What the command line cannot do, and so roci does not:
//! hand the master of a restored pty back (`orphan-pts-master`, only sent
//! over RPC: containers with `process.terminal` are refused), and call back
//! into the runtime at `setup-namespaces` (runc runs prestart/createRuntime
//! hooks there; roci runs no hooks on restore).
//!
//! What the container's mounts need, as runc does it:
//! - bind mounts from the host are *external* mounts: dumped under a name
//!   (the destination) and bound again from the host's source on restore;
//! - masked files that are binds of the host's `/dev/null` (runc's way):
//!   dumped as external `/dev/null`, bound from `/dev/null` on restore
//!   (roci masks with the container's own `/dev/null`, an internal bind
//!   CRIU dumps and restores by itself);
//! - a `cgroup` mount that is a bind of the container's cgroup directory
//!   (no cgroup namespace, or v1 hierarchies that could not be mounted):
//!   external, bound on restore from the restored container's cgroup
//!   directory;
//! - everything else (proc, sysfs, tmpfs with its content, devpts, mqueue,
//!   binds inside the container) CRIU dumps and mounts again itself.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::Spec;

use crate::cgroups::MountSource;
use crate::sys;

/// The binary looked up in `PATH` when `--criu` does not name one.
pub const DEFAULT_BINARY: &str = "criu";
/// Where `checkpoint` records the init's stdio (runc's file name and
/// format: a JSON list of the `/proc/PID/fd/N` link texts of fds 0, 1, 2),
/// so `restore` can hand its own stdio to the restored init in place of
/// pipes (`--inherit-fd`).
pub const DESCRIPTORS_FILE: &str = "descriptors.json";
/// CRIU's log of a dump or pre-dump, in the work directory.
pub const DUMP_LOG: &str = "dump.log";
/// CRIU's log of a restore, in the work directory.
pub const RESTORE_LOG: &str = "restore.log";
/// runc's CRIU configuration file, used when the container has no
/// `org.criu.config` annotation and the file exists (as runc does).
pub const RUNC_CONFIG: &str = "/etc/criu/runc.conf";
/// The annotation naming a CRIU configuration file (empty: none).
pub const CONFIG_ANNOTATION: &str = "org.criu.config";
/// How many `Error` lines of CRIU's log an error message quotes.
const QUOTED_ERRORS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("CRIU binary {binary:?} not found (checkpoint and restore run CRIU: install it, on Debian `apt-get install criu`, or name the binary with --criu PATH)")]
    NotFound { binary: PathBuf },
    #[error("run {binary}: {source}")]
    Spawn { binary: PathBuf, source: std::io::Error },
    /// CRIU ran and failed; the message quotes the errors of its log.
    #[error("criu {action} failed ({status}); {log}: {excerpt}")]
    Failed { action: &'static str, status: String, log: PathBuf, excerpt: String },
    #[error("--manage-cgroups-mode {0:?}: must be soft, full, strict or ignore")]
    CgroupsMode(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// CRIU's `--manage-cgroups` modes, as runc's `--manage-cgroups-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupsMode {
    /// Restore cgroups that do not exist, leave existing ones alone (CRIU's
    /// and runc's default).
    #[default]
    Soft,
    Full,
    Strict,
    Ignore,
}

impl CgroupsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupsMode::Soft => "soft",
            CgroupsMode::Full => "full",
            CgroupsMode::Strict => "strict",
            CgroupsMode::Ignore => "ignore",
        }
    }
}

impl std::str::FromStr for CgroupsMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "soft" => CgroupsMode::Soft,
            "full" => CgroupsMode::Full,
            "strict" => CgroupsMode::Strict,
            "ignore" => CgroupsMode::Ignore,
            other => return Err(Error::CgroupsMode(other.to_owned())),
        })
    }
}

/// Options that `checkpoint` and `restore` share, each one CRIU flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Common {
    /// `--work-path`: CRIU's logs and temporary files (default: the images
    /// directory).
    pub work_dir: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub auto_dedup: bool,
    pub cgroups_mode: CgroupsMode,
    /// A CRIU configuration file (`--config`).
    pub config_file: Option<PathBuf>,
}

impl Common {
    fn push(&self, a: &mut Args) {
        if let Some(w) = &self.work_dir {
            a.flag("--work-dir").path(w);
        }
        if let Some(c) = &self.config_file {
            a.flag("--config").path(c);
        }
        a.flag(&format!("--manage-cgroups={}", self.cgroups_mode.as_str()));
        a.flag_if("--tcp-established", self.tcp_established);
        a.flag_if("--ext-unix-sk", self.ext_unix_sk);
        a.flag_if("--shell-job", self.shell_job);
        a.flag_if("--file-locks", self.file_locks);
        a.flag_if("--auto-dedup", self.auto_dedup);
    }

    /// Where CRIU writes its log: the work directory, else the images one.
    pub fn log_dir<'a>(&'a self, images_dir: &'a Path) -> &'a Path {
        self.work_dir.as_deref().unwrap_or(images_dir)
    }
}

/// A `criu dump` (or `pre-dump`) of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// Host pid of the container's init: the root of the dumped tree.
    pub pid: i32,
    pub images_dir: PathBuf,
    /// The container's rootfs on the host (`--root`).
    pub rootfs: PathBuf,
    pub common: Common,
    pub leave_running: bool,
    /// Dump memory only and leave the tree running (`criu pre-dump`).
    pub pre_dump: bool,
    /// Images of a previous pre-dump, relative to `images_dir`.
    pub parent: Option<PathBuf>,
    /// The cgroup directory CRIU freezes the tree with.
    pub freeze_cgroup: Option<PathBuf>,
    /// External mounts: (mount point in the container, name in the image).
    pub external_mounts: Vec<(PathBuf, String)>,
    /// Other `--external` resources (namespaces joined by path).
    pub external: Vec<String>,
}

impl Dump {
    pub fn action(&self) -> &'static str {
        if self.pre_dump {
            "pre-dump"
        } else {
            "dump"
        }
    }

    /// CRIU's command line, without the binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut a = Args::default();
        a.flag(self.action());
        a.flag("--tree").flag(&self.pid.to_string());
        a.flag("--images-dir").path(&self.images_dir);
        a.flag("--log-file").flag(DUMP_LOG).flag("-v4");
        a.flag("--root").path(&self.rootfs);
        self.common.push(&mut a);
        // runc does not manage the container's network devices: the
        // network namespace is made again, empty, on restore.
        a.flag("--empty-ns").flag("net");
        if let Some(f) = &self.freeze_cgroup {
            a.flag("--freeze-cgroup").path(f);
        }
        if self.pre_dump || self.parent.is_some() {
            a.flag("--track-mem");
        }
        if let Some(p) = &self.parent {
            a.flag("--prev-images-dir").path(p);
        }
        a.flag_if("--leave-running", self.leave_running && !self.pre_dump);
        for (mountpoint, name) in &self.external_mounts {
            a.flag("--external").os(external_mount(mountpoint.as_os_str(), name.as_ref()));
        }
        for e in &self.external {
            a.flag("--external").flag(e);
        }
        a.0
    }
}

/// A `criu restore` of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restore {
    pub images_dir: PathBuf,
    /// The rootfs, a mount point in CRIU's mount namespace (`--root`).
    pub rootfs: PathBuf,
    /// Where CRIU writes the restored init's host pid.
    pub pid_file: PathBuf,
    pub common: Common,
    /// `--cgroup-root`: (hierarchy, path), `None` for every hierarchy not
    /// named otherwise.
    pub cgroup_roots: Vec<(Option<String>, String)>,
    /// External mounts: (name in the image, host path to bind).
    pub external_mounts: Vec<(String, PathBuf)>,
    /// `--inherit-fd`: (fd of CRIU, resource key it stands for).
    pub inherit_fds: Vec<(RawFd, String)>,
    /// `--join-ns`: (namespace type as CRIU names it, path).
    pub join_ns: Vec<(String, PathBuf)>,
}

impl Restore {
    pub fn args(&self) -> Vec<OsString> {
        let mut a = Args::default();
        a.flag("restore");
        // Detach once the tree runs: the init is reparented to the nearest
        // subreaper (roci itself in the foreground), as `create` leaves it.
        a.flag("--restore-detached");
        a.flag("--images-dir").path(&self.images_dir);
        a.flag("--log-file").flag(RESTORE_LOG).flag("-v4");
        a.flag("--root").path(&self.rootfs);
        a.flag("--pidfile").path(&self.pid_file);
        self.common.push(&mut a);
        a.flag("--empty-ns").flag("net");
        // Device nodes are found by major:minor if their path changed.
        a.flag("--evasive-devices");
        for (hierarchy, path) in &self.cgroup_roots {
            let value = match hierarchy {
                Some(h) => format!("{h}:{path}"),
                None => path.clone(),
            };
            a.flag("--cgroup-root").flag(&value);
        }
        for (name, host) in &self.external_mounts {
            a.flag("--external").os(external_mount(name.as_ref(), host.as_os_str()));
        }
        for (fd, key) in &self.inherit_fds {
            a.flag("--inherit-fd").flag(&format!("fd[{fd}]:{key}"));
        }
        for (ns, path) in &self.join_ns {
            let mut v = OsString::from(format!("{ns}:"));
            v.push(path.as_os_str());
            a.flag("--join-ns").os(v);
        }
        a.0
    }
}

/// `mnt[KEY]:VALUE`.
fn external_mount(key: &OsStr, value: &OsStr) -> OsString {
    let mut v = OsString::from("mnt[");
    v.push(key);
    v.push("]:");
    v.push(value);
    v
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, s: &str) -> &mut Self {
        self.0.push(s.into());
        self
    }
    fn flag_if(&mut self, s: &str, on: bool) -> &mut Self {
        if on {
            self.0.push(s.into());
        }
        self
    }
    fn path(&mut self, p: &Path) -> &mut Self {
        self.0.push(p.as_os_str().to_owned());
        self
    }
    fn os(&mut self, s: OsString) -> &mut Self {
        self.0.push(s);
        self
    }
}

/// The configuration file CRIU should read, as runc chooses it: the
/// `org.criu.config` annotation (empty: none), else runc's file if present.
pub fn config_file(spec: &Spec) -> Option<PathBuf> {
    match spec.annotations().as_ref().and_then(|a| a.get(CONFIG_ANNOTATION)) {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Path::new(RUNC_CONFIG).is_file().then(|| PathBuf::from(RUNC_CONFIG)),
    }
}

/// Lexically clean an absolute container path: `.` and empty components
/// dropped, `..` applied without climbing above `/`.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind") || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
}

/// The config's bind mounts: (destination, cleaned; host source, made
/// absolute against the bundle).
pub fn bind_mounts(spec: &Spec, bundle: &Path) -> Vec<(PathBuf, PathBuf)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| is_bind(m) && !matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")))
        .filter_map(|m| {
            let src = m.source().as_ref()?;
            let src = if src.is_absolute() { src.clone() } else { bundle.join(src) };
            Some((clean(m.destination()), src))
        })
        .collect()
}

/// Where the config's `cgroup` mount shows each hierarchy of the
/// container's cgroup: (mount point in the container, host directory).
pub fn cgroup_binds(spec: &Spec, sources: &[MountSource]) -> Vec<(PathBuf, PathBuf)> {
    let Some(dest) = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")))
        .map(|m| clean(m.destination()))
    else {
        return Vec::new();
    };
    sources.iter().map(|s| (if s.name.is_empty() { dest.clone() } else { dest.join(&s.name) }, s.host_dir.clone())).collect()
}

/// One line of `/proc/PID/mountinfo`: the mount's root in its filesystem,
/// where it is mounted, its filesystem type.
/// A parsed mountinfo line.
pub type MountLine = crate::mountinfo::Entry;

/// Every well-formed line of mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    crate::mountinfo::parse(text)
}

pub fn cgroup_bind_points(mounts: &[MountLine]) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| (m.fstype == "cgroup" || m.fstype == "cgroup2") && m.root != Path::new("/"))
        .map(|m| m.mount_point.clone())
        .collect()
}

/// Which of `points` (mount points of masked files) are binds of a file
/// from outside the container's mount namespace, so external for CRIU: roci
/// masks with the container's own `/dev/null` (a file of its `/dev`, which
/// CRIU dumps as an internal bind), runc with the host's.
pub fn external_binds(mounts: &[MountLine], points: &[PathBuf]) -> Vec<PathBuf> {
    points
        .iter()
        .filter(|p| {
            let Some(m) = mounts.iter().rev().find(|m| m.mount_point == **p) else { return false };
            !mounts.iter().any(|o| o.dev == m.dev && !points.contains(&o.mount_point))
        })
        .cloned()
        .collect()
}

/// The mount ids (first field) of mountinfo text.
pub fn mount_ids(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

/// CRIU's key for an open file on a mount outside the dumped mount namespace (`--external
/// file[MNT_ID:INODE]`, both hex).
pub fn external_file_key(mnt_id: u64, inode: u64) -> String {
    format!("file[{mnt_id:x}:{inode:x}]")
}

/// The `mnt_id:` of an fdinfo text.
pub fn fdinfo_mnt_id(fdinfo: &str) -> Option<u64> {
    fdinfo.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok())
}

/// The `Error` lines of a CRIU log, the last `max` of them, joined.
pub fn error_excerpt(log: &str, max: usize) -> String {
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).map(str::trim).collect();
    if errors.is_empty() {
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        return tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
    }
    errors[errors.len().saturating_sub(max)..].join(" | ")
}

/// The CRIU binary: `explicit` (`--criu`, a path or a name) or `criu`,
/// looked up in `PATH` and in the sbin directories, which a non-root
/// `PATH` may lack.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let name = explicit.unwrap_or(Path::new(DEFAULT_BINARY));
    if name.components().count() > 1 {
        return if name.is_file() { Ok(name.to_owned()) } else { Err(Error::NotFound { binary: name.to_owned() }) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NotFound { binary: name.to_owned() })
}

fn failure(action: &'static str, status: String, log: PathBuf) -> Error {
    let excerpt = match std::fs::read_to_string(&log) {
        Ok(text) => error_excerpt(&text, QUOTED_ERRORS),
        Err(e) => format!("(no log: {e})"),
    };
    Error::Failed { action, status, log, excerpt }
}

/// Run `criu dump`/`pre-dump`; CRIU's stdio is ours.
pub fn dump(binary: &Path, d: &Dump) -> Result<()> {
    let args = d.args();
    tracing::debug!(binary = %binary.display(), ?args, "run criu");
    let status = std::process::Command::new(binary)
        .args(&args)
        .status()
        .map_err(|source| Error::Spawn { binary: binary.to_owned(), source })?;
    if !status.success() {
        return Err(failure(d.action(), status.to_string(), d.common.log_dir(&d.images_dir).join(DUMP_LOG)));
    }
    Ok(())
}

/// Run `criu restore` in a mount namespace of its own, where the rootfs is
/// bound onto itself: CRIU wants its `--root` to be a mount point, and this
/// way nothing is mounted in the caller's namespace (runc binds the rootfs
/// under its state directory there and unmounts it after; a runtime killed
/// in between would leave that mount behind). CRIU builds the container's
/// mount namespace from the images on top of it.
///
/// CRIU's stdio is ours (the restored init inherits it where
/// `inherit_fds` says so); `fds` are (fd number in CRIU, fd to put there).
/// The caller must be single-threaded (see [`sys::clone_process`]).
pub fn restore(binary: &Path, r: &Restore, fds: Vec<(RawFd, OwnedFd)>) -> Result<()> {
    let args = r.args();
    tracing::debug!(binary = %binary.display(), ?args, "run criu");
    let cstr = |s: &OsStr| {
        CString::new(s.as_bytes()).map_err(|_| Error::Unsupported(format!("criu argument {s:?} contains a NUL byte")))
    };
    let path = cstr(binary.as_os_str())?;
    let mut argv = vec![path.clone()];
    for a in &args {
        argv.push(cstr(a)?);
    }
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    // Keep the fds to hand over above any number they will be moved to.
    let mut moved = Vec::new();
    for (target, fd) in fds {
        let high = sys::dup_at_least(fd.as_fd(), 1000).map_err(|source| Error::Io {
            op: "duplicate fd for",
            path: binary.to_owned(),
            source,
        })?;
        moved.push((target, high));
    }
    let rootfs = r.rootfs.clone();
    let child = sys::clone_process(libc::CLONE_NEWNS as u64, None, &mut [], move || {
        sys::reset_signals();
        if mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>).is_err() {
            return 126;
        }
        if mount(Some(&rootfs), &rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).is_err() {
            return 126;
        }
        let fds: Vec<(RawFd, std::os::fd::BorrowedFd<'_>)> = moved.iter().map(|(t, fd)| (*t, fd.as_fd())).collect();
        let argv: Vec<&std::ffi::CStr> = argv.iter().map(|a| a.as_c_str()).collect();
        let envp: Vec<&std::ffi::CStr> = envp.iter().map(|e| e.as_c_str()).collect();
        sys::exec_with_fds(&path, &argv, &envp, &fds)
    })
    .map_err(|source| Error::Spawn { binary: binary.to_owned(), source })?;
    let status = loop {
        match waitpid(child.pid, None) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::Spawn { binary: binary.to_owned(), source: e.into() }),
            Ok(s) => break s,
        }
    };
    let log = r.common.log_dir(&r.images_dir).join(RESTORE_LOG);
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, 126) => Err(Error::Spawn {
            binary: binary.to_owned(),
            source: std::io::Error::other(format!(
                "could not prepare the mount namespace for criu (bind {} onto itself)",
                r.rootfs.display()
            )),
        }),
        WaitStatus::Exited(_, 127) => {
            Err(Error::Spawn { binary: binary.to_owned(), source: std::io::Error::other("execve failed") })
        }
        WaitStatus::Exited(_, code) => Err(failure("restore", format!("exit status: {code}"), log)),
        other => Err(failure("restore", format!("{other:?}"), log)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn dump_arguments() {
        let d = Dump {
            pid: 42,
            images_dir: "/img".into(),
            rootfs: "/b/rootfs".into(),
            common: Common { file_locks: true, tcp_established: true, ..Default::default() },
            freeze_cgroup: Some("/sys/fs/cgroup/roci/c1".into()),
            external_mounts: vec![("/data".into(), "/data".into()), ("/proc/kcore".into(), "/dev/null".into())],
            ..Default::default()
        };
        assert_eq!(
            strs(&d.args()).join(" "),
            "dump --tree 42 --images-dir /img --log-file dump.log -v4 --root /b/rootfs --manage-cgroups=soft \
             --tcp-established --file-locks --empty-ns net --freeze-cgroup /sys/fs/cgroup/roci/c1 \
             --external mnt[/data]:/data --external mnt[/proc/kcore]:/dev/null"
        );
    }

    #[test]
    fn dump_leave_running_pre_dump_and_parent() {
        let mut d = Dump { pid: 1, images_dir: "/i".into(), rootfs: "/r".into(), leave_running: true, ..Default::default() };
        d.common.work_dir = Some("/w".into());
        d.common.cgroups_mode = CgroupsMode::Ignore;
        d.common.config_file = Some("/etc/criu/runc.conf".into());
        let a = strs(&d.args()).join(" ");
        assert!(a.starts_with("dump "), "{a}");
        assert!(a.contains(" --work-dir /w --config /etc/criu/runc.conf --manage-cgroups=ignore "), "{a}");
        assert!(a.ends_with(" --leave-running"), "{a}");
        assert!(!a.contains("--track-mem"), "{a}");

        d.pre_dump = true;
        let a = strs(&d.args()).join(" ");
        assert!(a.starts_with("pre-dump "), "{a}");
        assert!(a.contains("--track-mem"), "{a}");
        // pre-dump always leaves the tree running; CRIU refuses the flag.
        assert!(!a.contains("--leave-running"), "{a}");

        d.pre_dump = false;
        d.parent = Some("../pre".into());
        let a = strs(&d.args()).join(" ");
        assert!(a.contains(" --track-mem --prev-images-dir ../pre "), "{a}");
    }

    #[test]
    fn restore_arguments() {
        let r = Restore {
            images_dir: "/img".into(),
            rootfs: "/b/rootfs".into(),
            pid_file: "/run/roci/c1/criu.pid".into(),
            common: Common { shell_job: true, ext_unix_sk: true, ..Default::default() },
            cgroup_roots: vec![(None, "/roci/c1".into()), (Some("memory".into()), "/user/roci/c1".into())],
            external_mounts: vec![("/data".into(), "/srv/data".into()), ("/dev/null".into(), "/dev/null".into())],
            inherit_fds: vec![(1, "pipe:[1234]".into())],
            join_ns: vec![("ipc".into(), "/proc/7/ns/ipc".into())],
        };
        assert_eq!(
            strs(&r.args()).join(" "),
            "restore --restore-detached --images-dir /img --log-file restore.log -v4 --root /b/rootfs \
             --pidfile /run/roci/c1/criu.pid --manage-cgroups=soft --ext-unix-sk --shell-job --empty-ns net \
             --evasive-devices --cgroup-root /roci/c1 --cgroup-root memory:/user/roci/c1 \
             --external mnt[/data]:/srv/data --external mnt[/dev/null]:/dev/null \
             --inherit-fd fd[1]:pipe:[1234] --join-ns ipc:/proc/7/ns/ipc"
        );
    }

    #[test]
    fn cgroups_mode_parses_runc_values() {
        for m in [CgroupsMode::Soft, CgroupsMode::Full, CgroupsMode::Strict, CgroupsMode::Ignore] {
            assert_eq!(m.as_str().parse::<CgroupsMode>().unwrap(), m);
        }
        let e = "props".parse::<CgroupsMode>().unwrap_err().to_string();
        assert!(e.contains("--manage-cgroups-mode \"props\""), "{e}");
    }

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn bind_and_cgroup_mounts_from_config() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data/", "type": "bind", "source": "/srv/data"},
                {"destination": "/etc/../cfg", "source": "cfg", "options": ["rbind", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
            ]
        }));
        assert_eq!(
            bind_mounts(&s, Path::new("/bundle")),
            vec![(PathBuf::from("/data"), PathBuf::from("/srv/data")), (PathBuf::from("/cfg"), PathBuf::from("/bundle/cfg"))]
        );
        let v2 = [MountSource {
            name: String::new(),
            host_dir: "/sys/fs/cgroup/roci/c1".into(),
            controllers: vec![],
            version: crate::cgroups::Version::V2,
        }];
        assert_eq!(cgroup_binds(&s, &v2), vec![(PathBuf::from("/sys/fs/cgroup"), PathBuf::from("/sys/fs/cgroup/roci/c1"))]);
        let v1 = [MountSource {
            name: "cpu,cpuacct".into(),
            host_dir: "/sys/fs/cgroup/cpu,cpuacct/roci/c1".into(),
            controllers: vec!["cpu".into(), "cpuacct".into()],
            version: crate::cgroups::Version::V1,
        }];
        assert_eq!(
            cgroup_binds(&s, &v1),
            vec![(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/roci/c1"))]
        );
    }

    #[test]
    fn cgroup_binds_found_in_mountinfo() {
        let info = "\
73 68 0:31 /b/rootfs / rw,relatime master:10 - tmpfs tmpfs rw
103 73 0:47 / /sys ro,nosuid - sysfs sysfs ro
105 103 0:27 /roci-it-1/c\\0401 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw
106 103 0:28 / /sys/fs/cgroup/own rw - cgroup2 cgroup2 rw
107 105 0:29 /roci/c1 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
";
        let m = parse_mountinfo(info);
        assert_eq!(m.len(), 5);
        assert_eq!(m[2].root, PathBuf::from("/roci-it-1/c 1"));
        assert_eq!(cgroup_bind_points(&m), vec![PathBuf::from("/sys/fs/cgroup"), PathBuf::from("/sys/fs/cgroup/memory")]);
    }

    #[test]
    fn masked_files_external_only_when_bound_from_outside() {
        let info = "\
73 68 0:31 /b/rootfs / rw - tmpfs tmpfs rw
95 73 0:44 / /dev rw - tmpfs tmpfs rw
89 75 0:44 /null /proc/kcore rw - tmpfs tmpfs rw
90 75 0:5 /null /proc/keys rw - devtmpfs devtmpfs rw
91 75 0:5 /null /proc/timer_list rw - devtmpfs devtmpfs rw
";
        let m = parse_mountinfo(info);
        assert_eq!(m[2].dev, "0:44");
        let points: Vec<PathBuf> = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/absent"].map(PathBuf::from).to_vec();
        assert_eq!(external_binds(&m, &points), vec![PathBuf::from("/proc/keys"), PathBuf::from("/proc/timer_list")]);
    }

    #[test]
    fn excerpt_quotes_last_errors() {
        let log = "\
(00.001) Found mmap_min_addr
(00.002) Error (criu/util.c:642): exited, status=1
(00.017) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds
(00.018) Error (criu/crtools.c:260): Could not initialize kernel features detection.
";
        assert_eq!(
            error_excerpt(log, 2),
            "(00.017) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds | (00.018) Error (criu/crtools.c:260): Could not initialize kernel features detection."
        );
        assert_eq!(error_excerpt("a\nb\nc\nd\n", 2), "b | c | d");
    }

    #[test]
    fn missing_binary_names_it_and_the_package() {
        let e = find_binary(Some(Path::new("/nonexistent/criu"))).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/criu") && e.contains("apt-get install criu") && e.contains("--criu"), "{e}");
        let e = find_binary(Some(Path::new("no-such-criu-binary"))).unwrap_err().to_string();
        assert!(e.contains("no-such-criu-binary"), "{e}");
    }

    #[test]
    fn external_files_are_keyed_by_mount_and_inode_in_hex() {
        let info = "23 1 0:5 / /dev rw - devtmpfs udev rw\n731 700 0:44 / / rw - overlay overlay rw\n";
        assert_eq!(mount_ids(info), [23, 731]);
        assert_eq!(fdinfo_mnt_id("pos:\t0\nflags:\t0100000\nmnt_id:\t27\nino:\t5\n"), Some(27));
        assert_eq!(fdinfo_mnt_id("pos: 0\n"), None);
        assert_eq!(external_file_key(27, 0x1f4), "file[1b:1f4]");
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(clean(Path::new("/../../x")), PathBuf::from("/x"));
        assert_eq!(clean(Path::new("rel")), PathBuf::from("/rel"));
    }
}
