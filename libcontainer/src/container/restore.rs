//! `restore`: make a container again from its bundle and a checkpoint.
//!
//! ```text
//!  (none) ──state dir, cgroup with limits──▶ criu restore ──▶ state.json with the restored init ──▶ running
//!            (lock held, as `create`)        │
//!                                            └── fails ──▶ cgroup (and whatever CRIU left in it) and state dir removed
//! ```
//!
//! The mount namespace is CRIU's work, as with runc: CRIU mounts again what
//! it dumped (proc, sysfs, tmpfs with their content, devpts, binds inside
//! the container) on the rootfs, and binds the external mounts from the
//! host paths this module names (config bind sources, `/dev/null` for masked
//! files, the new cgroup directory for a cgroup bind). That is simpler and
//! more faithful than preparing the rootfs with `rootfs::prepare` in a
//! helper and asking CRIU to restore into it: CRIU would still have to
//! rebuild the tmpfs contents and the in-container binds it dumped, and the
//! two mount trees would have to agree mount for mount. What roci does
//! beforehand is what runc does: create the mount points of bind mounts in
//! the rootfs (CRIU binds onto existing paths).
//!
//! The restored init's pid comes from CRIU's `--pidfile`; its start time
//! is read at once and saved with it, so the container's status is derived
//! from the live process exactly as for a created one, and `delete` works
//! unchanged. Not done on restore (runc does them at CRIU notifications
//! that only its RPC mode gets): prestart/createRuntime hooks, and handing
//! back a pty master (terminal containers are refused).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::SigmaskHow;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;

use super::checkpoint::{make_dir, ns_key, Result};
use super::create::write_pid_file;
use super::foreground::{forwarded_signals, supervise};
use crate::cgroups::{self, Manager};
use crate::criu::{self, Restore};
use crate::rootfs::path::{self as rpath, Create};
use crate::spec;
use crate::state::Dir;

/// Options of `restore` (runc's flags).
#[derive(Debug, Clone)]
pub struct Options<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    /// `--criu`: the CRIU binary (default `criu` in `PATH`).
    pub criu: Option<&'a Path>,
    /// `--image-path`: the checkpoint to restore.
    pub image_path: &'a Path,
    /// Return once the container runs instead of waiting for it.
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    /// Accepted as runc does; terminal containers cannot be restored.
    pub console_socket: Option<&'a Path>,
    /// Accepted as runc does: CRIU, not roci, enters the rootfs on restore.
    pub no_pivot: bool,
    /// `--work-path`, `--tcp-established`, `--ext-unix-sk`, `--shell-job`,
    /// `--file-locks`, `--auto-dedup`, `--manage-cgroups-mode`.
    pub criu_opts: criu::Common,
}

/// The restored init's pid file CRIU writes, in the state directory.
const PID_FILE: &str = "criu-restore.pid";
/// The first fd number handed to CRIU for `--inherit-fd` of namespaces
/// (0-2 are stdio, 3 is left free as in runc's numbering).
const FIRST_NS_FD: RawFd = 4;

/// Rolls back a half-restored container.
struct Undo {
    dir: Option<Dir>,
    cgroup: Option<Box<dyn Manager>>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        // destroy() kills whatever is still in the cgroup (a restored tree
        // CRIU did not clean up, or an init we could not record).
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "remove cgroup of failed restore");
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.remove() {
                tracing::warn!(error = %e, "remove state of failed restore");
            }
        }
    }
}

/// Restore the container; returns the exit code `roci restore` should exit
/// with (0 when detached, else the container's).
pub fn restore(opts: Options<'_>) -> Result<i32> {
    spec::validate_id(opts.id)?;
    let bundle = spec::load(opts.bundle)?;
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref().expect("validated");
    if spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false) {
        return Err(criu::Error::Unsupported(
            "restore of a container with a terminal (process.terminal) is not supported: CRIU hands the restored pty back only in its RPC mode, which roci does not use".into(),
        )
        .into());
    }
    if opts.console_socket.is_some() {
        return Err(super::Error::Usage("--console-socket given but process.terminal is false".into()).into());
    }
    let binary = criu::find_binary(opts.criu)?;
    let images_dir = std::fs::canonicalize(opts.image_path).map_err(|source| criu::Error::Io {
        op: "open checkpoint images",
        path: opts.image_path.to_owned(),
        source,
    })?;
    if !images_dir.join("inventory.img").is_file() {
        return Err(super::Error::Usage(format!(
            "--image-path {}: no checkpoint there (no inventory.img)",
            images_dir.display()
        ))
        .into());
    }
    let mut common = opts.criu_opts.clone();
    if let Some(w) = &common.work_dir {
        make_dir(w)?;
    }
    if common.config_file.is_none() {
        common.config_file = criu::config_file(spec);
    }

    let dir = Dir::create(opts.root, opts.id)?;
    let mut undo = Undo { dir: None, cgroup: None };
    let dir = undo.dir.insert(dir);

    // The cgroup as `create` makes it: limits and device rules first, so
    // the restored processes never run without them.
    let cgroup_path = cgroups::resolve_path(linux.cgroups_path().as_deref().and_then(Path::to_str), opts.id)?;
    let mut cg = cgroups::manager(&cgroup_path)?;
    cg.create()?;
    let cg = undo.cgroup.insert(cg);
    super::limit(cg.as_ref(), linux).map_err(super::Error::from)?;

    make_bind_mount_points(spec, &bundle.dir, &bundle.rootfs)?;

    let mut external_mounts: Vec<(String, PathBuf)> =
        criu::bind_mounts(spec, &bundle.dir).into_iter().map(|(dest, src)| (dest.to_string_lossy().into_owned(), src)).collect();
    external_mounts.extend(
        criu::cgroup_binds(spec, &cg.mount_sources()).into_iter().map(|(dest, host)| (dest.to_string_lossy().into_owned(), host)),
    );
    if linux.masked_paths().as_ref().is_some_and(|m| !m.is_empty()) {
        external_mounts.push(("/dev/null".into(), "/dev/null".into()));
    }
    let mut cgroup_roots = vec![(None, cgroup_path.path().to_owned())];
    // A hierarchy where the path differs (relative cgroupsPath on a v1 host
    // whose caller is in different cgroups). CRIU names v1 hierarchies by
    // their controllers; the cgroup2 tree of a hybrid host has no such name.
    for (key, path) in cgroup_path.per_hierarchy() {
        if !key.is_empty() {
            cgroup_roots.push((Some(key.clone()), path.clone()));
        }
    }
    let (ns_fds, inherit_ns, join_ns) = namespaces(linux.namespaces().as_deref().unwrap_or_default())?;
    let mut inherit_fds = stdio_pipes(&images_dir);
    inherit_fds.extend(inherit_ns);

    let pid_file = dir.path.join(PID_FILE);
    let r = Restore {
        images_dir: images_dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid_file: pid_file.clone(),
        common,
        cgroup_roots,
        external_mounts,
        inherit_fds,
        join_ns,
    };

    // In the foreground we become the restored init's parent: CRIU detaches
    // from the tree, which is then reparented to its nearest subreaper.
    let forwarded = forwarded_signals();
    if !opts.detach {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
            .map_err(|e| super::Error::Sys { op: "block signals".into(), source: e.into() })?;
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| super::Error::Sys { op: "become child subreaper".into(), source: e.into() })?;
    }
    tracing::debug!(id = opts.id, images = %images_dir.display(), "restore");
    criu::restore(&binary, &r, ns_fds)?;

    let text = std::fs::read_to_string(&pid_file).map_err(|source| criu::Error::Io {
        op: "read restored pid from",
        path: pid_file.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(&pid_file);
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| criu::Error::Unsupported(format!("criu wrote {text:?} to {}: not a pid", pid_file.display())))?;
    let pid = Pid::from_raw(pid);
    let annotations = spec.annotations().clone().unwrap_or_default().into_iter().collect();
    let saved = super::saved_state(opts.id, pid, &bundle, annotations, Some(cgroup_path))?;
    dir.save(&saved)?;
    if let Some(p) = opts.pid_file {
        write_pid_file(p, pid)?;
    }
    undo.dir = None;
    undo.cgroup = None;
    if opts.detach {
        return Ok(0);
    }
    let code = supervise(pid, None, &forwarded)?;
    if let Err(e) = super::delete::delete(opts.root, opts.id, true) {
        tracing::warn!(error = %e, "delete after restore");
    }
    Ok(code)
}

/// CRIU binds external mounts onto existing paths: create the mount points
/// of the config's bind mounts in the rootfs, as `create` does (resolved
/// inside the rootfs), except below a tmpfs destination, whose content CRIU
/// restores itself.
fn make_bind_mount_points(spec: &oci_spec::runtime::Spec, bundle: &Path, rootfs: &Path) -> Result<()> {
    let tmpfs: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| criu::clean(m.destination()))
        .collect();
    let root = File::open(rootfs).map_err(|source| criu::Error::Io { op: "open rootfs", path: rootfs.to_owned(), source })?;
    for (dest, src) in criu::bind_mounts(spec, bundle) {
        if tmpfs.iter().any(|t| dest != *t && dest.starts_with(t)) {
            continue;
        }
        let create = if std::fs::metadata(&src).is_ok_and(|m| m.is_dir()) { Create::Dir } else { Create::File };
        rpath::resolve(root.as_fd(), rootfs, &dest, create, true).map_err(crate::rootfs::Error::from)?;
    }
    Ok(())
}

type NsPlan = (Vec<(RawFd, OwnedFd)>, Vec<(RawFd, String)>, Vec<(String, PathBuf)>);

/// Namespaces joined by path, as runc hands them to CRIU: network and PID
/// ones as inherited fds under the key they were dumped with, the others
/// with `--join-ns`. A cgroup namespace path CRIU cannot join.
fn namespaces(list: &[oci_spec::runtime::LinuxNamespace]) -> Result<NsPlan> {
    let (mut fds, mut keys, mut join) = (Vec::new(), Vec::new(), Vec::new());
    for ns in list {
        let Some(path) = ns.path() else { continue };
        if let Some(key) = ns_key(ns.typ()) {
            let fd = File::open(path).map_err(|source| criu::Error::Io { op: "open namespace", path: path.clone(), source })?;
            let n = FIRST_NS_FD + fds.len() as RawFd;
            fds.push((n, OwnedFd::from(fd)));
            keys.push((n, key.to_owned()));
            continue;
        }
        let name = match ns.typ() {
            LinuxNamespaceType::Ipc => "ipc",
            LinuxNamespaceType::Uts => "uts",
            LinuxNamespaceType::Mount => "mnt",
            LinuxNamespaceType::User => "user",
            LinuxNamespaceType::Time => "time",
            _ => {
                return Err(criu::Error::Unsupported(format!(
                    "linux.namespaces: CRIU cannot restore into an existing cgroup namespace ({})",
                    path.display()
                ))
                .into());
            }
        };
        join.push((name.to_owned(), path.clone()));
    }
    Ok((fds, keys, join))
}

/// The init's stdio that were pipes at checkpoint time (runc's
/// `descriptors.json`) become ours: the restored init inherits our fd of
/// the same number.
fn stdio_pipes(images_dir: &Path) -> Vec<(RawFd, String)> {
    let Ok(data) = std::fs::read(images_dir.join(criu::DESCRIPTORS_FILE)) else { return Vec::new() };
    let fds: Vec<String> = serde_json::from_slice(&data).unwrap_or_default();
    fds.into_iter().enumerate().filter(|(_, l)| l.starts_with("pipe:")).map(|(i, l)| (i as RawFd, l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_pipes_from_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(stdio_pipes(dir.path()).is_empty(), "no descriptors.json: nothing inherited");
        std::fs::write(dir.path().join(criu::DESCRIPTORS_FILE), br#"["/dev/null","pipe:[1349]","pipe:[1350]"]"#).unwrap();
        assert_eq!(stdio_pipes(dir.path()), vec![(1, "pipe:[1349]".to_string()), (2, "pipe:[1350]".to_string())]);
    }

    #[test]
    fn namespaces_by_path_become_inherited_fds_or_joins() {
        let ns = |typ: &str, path: Option<&str>| -> oci_spec::runtime::LinuxNamespace {
            let mut v = serde_json::json!({ "type": typ });
            if let Some(p) = path {
                v["path"] = p.into();
            }
            serde_json::from_value(v).unwrap()
        };
        let list =
            [ns("pid", None), ns("network", Some("/proc/self/ns/net")), ns("ipc", Some("/proc/self/ns/ipc")), ns("mount", None)];
        let (fds, keys, join) = namespaces(&list).unwrap();
        assert_eq!(fds.len(), 1);
        assert_eq!(fds[0].0, FIRST_NS_FD);
        assert_eq!(keys, vec![(FIRST_NS_FD, "extRootNetNS".to_string())]);
        assert_eq!(join, vec![("ipc".to_string(), PathBuf::from("/proc/self/ns/ipc"))]);
        let e = namespaces(&[ns("cgroup", Some("/proc/self/ns/cgroup"))]).unwrap_err().to_string();
        assert!(e.contains("linux.namespaces") && e.contains("cgroup namespace"), "{e}");
    }
}
