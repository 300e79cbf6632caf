//! `checkpoint`: save a running container's processes with CRIU.
//!
//! ```text
//!  running/paused ──criu dump──▶ images written, processes killed by CRIU ──▶ container destroyed
//!        │                       (--leave-running: they go on; --pre-dump: memory only, they go on)
//!        └── CRIU fails ──▶ CRIU resumes the processes: the container is as it was
//! ```
//!
//! As runc: a checkpointed container (without `--leave-running` or
//! `--pre-dump`) is destroyed like `delete` (cgroup removed, poststop hooks
//! run, state gone); `restore` makes it again from the bundle and the images
//! (see `restore.rs`). The images directory also gets runc's
//! `descriptors.json`, the init's stdio, so a restore can connect pipes.

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxNamespaceType;

use super::{status, Status};
use crate::cgroups::{self, Version};
use crate::criu::{self, Dump};
use crate::state::{self, Dir, Saved};

/// Errors of `checkpoint` and `restore`: the container's, or CRIU's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Container(#[from] super::Error),
    #[error(transparent)]
    Criu(#[from] criu::Error),
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Cgroups(#[from] cgroups::Error),
    #[error(transparent)]
    Spec(#[from] crate::spec::Error),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Options of `checkpoint` (runc's flags).
#[derive(Debug, Clone)]
pub struct Options<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    /// `--criu`: the CRIU binary (default `criu` in `PATH`).
    pub criu: Option<&'a Path>,
    /// `--image-path`: where the images go (created if missing).
    pub image_path: &'a Path,
    /// `--parent-path`: a previous pre-dump, relative to the image path.
    pub parent_path: Option<&'a Path>,
    pub leave_running: bool,
    pub pre_dump: bool,
    /// `--work-path`, `--tcp-established`, `--ext-unix-sk`, `--shell-job`,
    /// `--file-locks`, `--auto-dedup`, `--manage-cgroups-mode`.
    pub criu_opts: criu::Common,
}

/// runc's default image path: `checkpoint` in the current directory.
pub fn default_image_path() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")).join("checkpoint")
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| criu::Error::Io { op, path: path.to_owned(), source }.into()
}

/// Make a directory CRIU writes into (a container may be checkpointed
/// more than once into the same one).
pub(crate) fn make_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io("create directory", path))
}

pub fn checkpoint(opts: Options<'_>) -> Result<()> {
    let dir = Dir::open(opts.root, opts.id)?;
    let saved = dir.load()?;
    let st = status(&dir.path, saved.as_ref());
    let saved = match (st, saved) {
        (Status::Running | Status::Paused, Some(s)) => s,
        (st, _) => return Err(super::Error::Status(format!("container {} cannot be checkpointed in {st} state", opts.id)).into()),
    };
    let config = saved.spec().map_err(super::Error::from)?;
    if config.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false) {
        return Err(criu::Error::Unsupported(format!(
            "container {}: checkpoint of a container with a terminal (process.terminal) is not supported: CRIU hands a restored pty back only in its RPC mode, which roci does not use",
            opts.id
        ))
        .into());
    }
    let binary = criu::find_binary(opts.criu)?;

    make_dir(opts.image_path)?;
    let images_dir = std::fs::canonicalize(opts.image_path).map_err(io("resolve", opts.image_path))?;
    if let Some(parent) = opts.parent_path {
        if parent.is_absolute() {
            return Err(super::Error::Usage("--parent-path must be relative to --image-path".into()).into());
        }
        let real = images_dir.join(parent);
        if !real.is_dir() {
            return Err(super::Error::Usage(format!("invalid --parent-path: {} is not a directory", real.display())).into());
        }
    }
    let mut common = opts.criu_opts.clone();
    if let Some(w) = &common.work_dir {
        make_dir(w)?;
    }
    if common.config_file.is_none() {
        common.config_file = criu::config_file(&config);
    }

    let pid = saved.pid;
    let mountinfo_path = PathBuf::from(format!("/proc/{pid}/mountinfo"));
    let mountinfo = std::fs::read_to_string(&mountinfo_path).map_err(io("read", &mountinfo_path))?;
    let mounts = criu::parse_mountinfo(&mountinfo);
    let dump = Dump {
        pid,
        images_dir: images_dir.clone(),
        rootfs: saved.rootfs.clone(),
        common,
        leave_running: opts.leave_running,
        pre_dump: opts.pre_dump,
        parent: opts.parent_path.map(Path::to_owned),
        freeze_cgroup: freezer_dir(&saved)?,
        external_mounts: if opts.pre_dump { Vec::new() } else { external_mounts(&saved, &config, &mounts) },
        external: {
            let mut e = external_namespaces(&config)?;
            e.extend(external_stdio(pid, &criu::mount_ids(&mountinfo)));
            e
        },
    };
    if !opts.pre_dump {
        write_descriptors(pid, &images_dir)?;
    }
    tracing::debug!(id = opts.id, pid, images = %images_dir.display(), "checkpoint");
    criu::dump(&binary, &dump)?;
    if opts.leave_running || opts.pre_dump {
        return Ok(());
    }
    // CRIU killed the tree; destroy what is left as `delete` does.
    drop(dir);
    match super::delete::delete(opts.root, opts.id, true) {
        Ok(()) | Err(super::Error::State(state::Error::NotExist(_))) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The cgroup directory CRIU freezes the tree with: the v1 freezer
/// hierarchy where the host has one, else the cgroup2 directory.
fn freezer_dir(saved: &Saved) -> Result<Option<PathBuf>> {
    let Some(cg) = saved.cgroup()? else { return Ok(None) };
    let sources = cg.mount_sources();
    let v1 = sources.iter().find(|s| s.version == Version::V1 && s.controllers.iter().any(|c| c == "freezer"));
    let v2 = sources.iter().find(|s| s.version == Version::V2 && s.host_dir.join("cgroup.freeze").exists());
    Ok(v1.or(v2).map(|s| s.host_dir.clone()))
}

/// The container's mounts CRIU must not dump but bind again on restore
/// (see the `criu` module): every config bind mount and cgroup directory
/// bind that is a mount point of the init's mount namespace, and masked
/// files bound from a `/dev/null` outside it.
fn external_mounts(saved: &Saved, config: &oci_spec::runtime::Spec, mounts: &[criu::MountLine]) -> Vec<(PathBuf, String)> {
    let is_mount = |p: &Path| mounts.iter().any(|m| m.mount_point == p);
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    let mut add = |point: PathBuf, name: String| {
        if !out.iter().any(|(p, _)| *p == point) {
            out.push((point, name));
        }
    };
    for (dest, _) in criu::bind_mounts(config, &saved.bundle) {
        if is_mount(&dest) {
            let name = dest.to_string_lossy().into_owned();
            add(dest, name);
        }
    }
    for point in criu::cgroup_bind_points(mounts) {
        let name = point.to_string_lossy().into_owned();
        add(point, name);
    }
    let linux = config.linux().as_ref();
    let masked_files: Vec<PathBuf> = linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
        .map(|p| criu::clean(Path::new(p)))
        .filter(|p| std::fs::metadata(format!("/proc/{}/root{}", saved.pid, p.display())).is_ok_and(|m| !m.is_dir()))
        .collect();
    for p in criu::external_binds(mounts, &masked_files) {
        add(p, "/dev/null".into());
    }
    // Device nodes bound from the host (user namespaces) are external as
    // in runc; created nodes are not mount points and are dumped as files.
    for d in linux.and_then(|l| l.devices().as_ref()).into_iter().flatten() {
        let p = criu::clean(d.path());
        if is_mount(&p) {
            let name = p.to_string_lossy().into_owned();
            add(p, name);
        }
    }
    out
}

/// CRIU's key for a namespace joined by path (runc's: `extRootNetNS`).
pub(crate) fn ns_key(typ: LinuxNamespaceType) -> Option<&'static str> {
    match typ {
        LinuxNamespaceType::Network => Some("extRootNetNS"),
        LinuxNamespaceType::Pid => Some("extRootPidNS"),
        _ => None,
    }
}

/// Network and PID namespaces the container joined by path are external:
/// CRIU does not dump them and expects them back on restore.
fn external_namespaces(config: &oci_spec::runtime::Spec) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for ns in config.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        let (Some(key), Some(path)) = (ns_key(ns.typ()), ns.path()) else { continue };
        let ino = std::fs::metadata(path).map_err(io("stat namespace", path))?.ino();
        let kind = if ns.typ() == LinuxNamespaceType::Network { "net" } else { "pid" };
        out.push(format!("{kind}[{ino}]:{key}"));
    }
    Ok(out)
}

/// The init's stdio that are files on mounts outside its mount namespace (a `/dev/null` its
/// parent opened on the host, as roci-cri's monitor and containerd's shim give a container
/// without stdin): CRIU cannot find their mount and refuses the dump unless they are declared
/// external. Pipes and sockets need nothing (CRIU dumps their ends).
fn external_stdio(pid: i32, mount_ids: &[u64]) -> Vec<String> {
    let mut out = Vec::new();
    for fd in 0..3 {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
        if !link.is_absolute() {
            continue;
        }
        let Some(mnt_id) =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok().as_deref().and_then(criu::fdinfo_mnt_id)
        else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) else { continue };
        let key = criu::external_file_key(mnt_id, meta.ino());
        if !mount_ids.contains(&mnt_id) && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// runc's `descriptors.json`: what the init's fds 0, 1 and 2 are.
fn write_descriptors(pid: i32, images_dir: &Path) -> Result<()> {
    let fds: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default()
        })
        .collect();
    let data = serde_json::to_vec(&fds).expect("descriptors serialise");
    state::write_atomic(images_dir, criu::DESCRIPTORS_FILE, &data)?;
    Ok(())
}
