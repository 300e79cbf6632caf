//! The container's root filesystem: mounts, devices, `pivot_root`, masked and
//! read-only paths.
//!
//! Runs inside the container's init, in its new mount namespace, in three
//! steps around the hooks that must see the prepared but not yet entered
//! rootfs:
//!
//! ```text
//!  prepare(): / rslave, rootfs bound on itself, config mounts in order,
//!             default and config devices, /dev symlinks
//!      │        (createRuntime / prestart hooks in the runtime namespace,
//!      │         createContainer hooks in the container's)
//!  enter():   pivot_root into the rootfs (or MS_MOVE + chroot with --no-pivot)
//!      │
//!  finalize(): sysctls, read-only and masked paths, read-only root,
//!              rootfs propagation
//! ```
//!
//! Every destination is resolved inside the rootfs by [`path::resolve`], so
//! neither `..` nor a symlink in the image can place a mount on the host.
//!
//! # Without a mount namespace
//!
//! A config that lists no `mount` namespace inherits the runtime's (as
//! runtime-spec says of every type left out, and as runc accepts). Then the
//! steps above run in the runtime's mount namespace, and only what stays
//! inside the rootfs is done: the rootfs bound on itself and the config's
//! mounts under it, then a `chroot` into it. Nothing changes the namespace's
//! own mounts: no propagation change of `/` or of the rootfs's parent, no
//! `pivot_root` or move onto `/` (either would swap the root of every
//! process sharing the namespace). Masked and read-only paths and
//! `rootfsPropagation` are refused for such a config (see `spec.rs`), and
//! `delete` (or a failed `create`) detaches the rootfs bind with everything
//! mounted under it ([`detach_shared`]), where runc leaves those mounts
//! behind.

pub mod devices;
pub mod options;
pub mod path;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

pub use options::propagation_flag;
use path::{proc_fd_path, Create};

use crate::cgroups::{self, MountSource};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mount {what} on {dest} in {rootfs}: {source}")]
    Mount { what: String, dest: PathBuf, rootfs: PathBuf, source: nix::Error },
    #[error(transparent)]
    Resolve(#[from] path::Error),
    #[error("{op} {path}: {source}")]
    Sys { op: &'static str, path: PathBuf, source: nix::Error },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("mounts[{index}]: {reason}")]
    Config { index: usize, reason: String },
    #[error("{field}: {path}: {reason}")]
    Path { field: &'static str, path: PathBuf, reason: String },
    #[error("mount {typ} on {dest} in {rootfs}: filesystem {typ:?} must be mounted on ordinary directory ({what})")]
    NotDirectory { typ: String, dest: PathBuf, rootfs: PathBuf, what: &'static str },
}

pub type Result<T> = std::result::Result<T, Error>;

fn sys(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(nix::Error) -> Error {
    let path = path.into();
    move |source| Error::Sys { op, path, source }
}

/// What the rootfs steps need to know besides the spec.
pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    /// The container's cgroup in each hierarchy, for `cgroup` mounts.
    pub cgroup_mounts: Vec<MountSource>,
    /// Whether the container has its own cgroup namespace, so a `cgroup`
    /// mount can be a real cgroup filesystem instead of a bind.
    pub cgroup_ns: bool,
    /// Whether init will be given a console (then `/dev/console` is made).
    pub terminal: bool,
    /// Idmapped copies of the sources of bind mounts that carry
    /// `uidMappings`/`gidMappings`, by mount index, made by the runtime
    /// (only it may idmap the host's mounts) and attached here.
    pub idmapped: Vec<(usize, OwnedFd)>,
}

impl Setup<'_> {
    fn mounts(&self) -> &[Mount] {
        self.spec.mounts().as_deref().unwrap_or_default()
    }

    fn root_propagation(&self) -> MsFlags {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().as_deref())
            .and_then(propagation_flag)
            .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC)
    }

    /// Whether the container has a mount namespace of its own (new or
    /// joined); without one the rootfs is set up in the runtime's.
    fn own_mount_ns(&self) -> bool {
        has_mount_ns(self.spec)
    }

    /// /dev is set up by us unless the config binds something over it.
    fn makes_dev(&self) -> bool {
        !self
            .mounts()
            .iter()
            .any(|m| m.destination() == Path::new("/dev") && options::parse(m.options().as_deref().unwrap_or_default()).is_bind())
    }

    fn mount_err(&self, what: impl Into<String>, dest: &Path) -> impl FnOnce(nix::Error) -> Error {
        let (what, dest, rootfs) = (what.into(), dest.to_owned(), self.rootfs.to_owned());
        move |source| Error::Mount { what, dest, rootfs, source }
    }
}

/// For each bind mount with `uidMappings`/`gidMappings`: a detached copy of
/// its source, idmapped through a user namespace with those mappings. Runs
/// in the runtime, before the clone; the init attaches them.
pub fn idmapped_sources(spec: &Spec, bundle: &Path) -> Result<Vec<(usize, OwnedFd)>> {
    let mut out = Vec::new();
    for (index, m) in spec.mounts().iter().flatten().enumerate() {
        let (uid, gid) = (m.uid_mappings().as_deref().unwrap_or_default(), m.gid_mappings().as_deref().unwrap_or_default());
        if uid.is_empty() && gid.is_empty() {
            continue;
        }
        let opts = options::parse(m.options().as_deref().unwrap_or_default());
        let source =
            m.source().as_ref().ok_or_else(|| Error::Config { index, reason: "idmapped mount without a source".into() })?;
        let source = if source.is_absolute() { source.clone() } else { bundle.join(source) };
        let recursive = opts.flags.contains(MsFlags::MS_REC) || m.options().iter().flatten().any(|o| o == "ridmap");
        let userns = crate::namespaces::userns_with_maps(uid, gid).map_err(|e| Error::Config { index, reason: e.to_string() })?;
        let io_err = |op: &'static str, e: std::io::Error| Error::Io { op, path: source.clone(), source: e };
        let tree = crate::sys::mount::clone_tree(&source, recursive).map_err(|e| io_err("clone mount of", e))?;
        crate::sys::mount::idmap_tree(tree.as_fd(), userns.as_fd(), recursive).map_err(|e| io_err("idmap mount of", e))?;
        tracing::debug!(index, source = %source.display(), "idmapped mount prepared");
        out.push((index, tree));
    }
    Ok(out)
}

/// Mount everything the config asks for under the rootfs; see module docs.
pub fn prepare(s: &Setup<'_>) -> Result<()> {
    // An unbindable `/` would refuse the rootfs self-bind below (EINVAL):
    // until the rootfs is entered it is only private (no propagation
    // either way, as unbindable implies); `finalize` makes it unbindable.
    let mut propagation = s.root_propagation();
    if propagation.contains(MsFlags::MS_UNBINDABLE) {
        propagation = (propagation - MsFlags::MS_UNBINDABLE) | MsFlags::MS_PRIVATE;
    }
    if s.own_mount_ns() {
        tracing::debug!(?propagation, "set propagation of /");
        mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>).map_err(s.mount_err("propagation", Path::new("/")))?;
        make_parent_mount_private(s.rootfs)?;
    }
    tracing::debug!(rootfs = %s.rootfs.display(), "bind rootfs onto itself");
    mount(Some(s.rootfs), s.rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(s.mount_err("rootfs bind", s.rootfs))?;
    // Opened only now, so that lookups start on the new bind mount and the
    // mounts below land on it rather than underneath it.
    let root =
        open(s.rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", s.rootfs))?;

    for (index, m) in s.mounts().iter().enumerate() {
        mount_one(s, root.as_fd(), index, m)?;
    }
    if s.makes_dev() {
        devices::create_all(s, root.as_fd())?;
    }
    // A missing working directory is made, as runc does.
    if let Some(cwd) = s.spec.process().as_ref().map(|p| p.cwd()) {
        path::resolve(root.as_fd(), s.rootfs, cwd, Create::Dir, true)?;
    }
    Ok(())
}

/// `pivot_root` fails when the rootfs's parent mount is shared, and a bind
/// under a shared mount would propagate back to the host: make that mount
/// private (in our namespace only) if it is shared. A slave parent (the
/// default rslave) stays a slave, so host mounts still propagate in.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| Error::Io {
        op: "read",
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    // The last matching line is the topmost mount at the longest prefix.
    let parent = crate::mountinfo::parse(&info).into_iter().filter(|e| rootfs.starts_with(&e.mount_point)).fold(
        None::<crate::mountinfo::Entry>,
        |best, e| match best {
            Some(b) if b.mount_point.as_os_str().len() > e.mount_point.as_os_str().len() => Some(b),
            _ => Some(e),
        },
    );
    match parent {
        Some(p) if p.is_shared() => mount(None::<&str>, &p.mount_point, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(sys("make private", p.mount_point)),
        _ => Ok(()),
    }
}

fn mount_one(s: &Setup<'_>, root: BorrowedFd<'_>, index: usize, m: &Mount) -> Result<()> {
    let opts = options::parse(m.options().as_deref().unwrap_or_default());
    mount_kind(s, root, index, m, &opts)?;
    set_recursive(s, root, m, &opts.recursive)
}

/// The recursive attributes (`rro`, `rnosuid`, ...) on the mount just made
/// at the destination and on every mount below it, with one
/// `mount_setattr(AT_RECURSIVE)`: a plain `ro` on a recursive bind makes
/// only its top read-only (as runc), `rro` the whole tree.
fn set_recursive(s: &Setup<'_>, root: BorrowedFd<'_>, m: &Mount, rec: &options::Recursive) -> Result<()> {
    if rec.is_empty() {
        return Ok(());
    }
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let top = path::resolve(root, s.rootfs, dest, Create::Nothing, !matches!(typ, "proc" | "sysfs"))?;
    let (set, clear) = rec.attributes();
    tracing::debug!(dest = %dest.display(), set = format_args!("{set:#x}"), clear = format_args!("{clear:#x}"), "recursive mount attributes");
    crate::sys::mount::set_attributes(top.as_fd(), set, clear, true).map_err(|e| {
        let words: Vec<&str> =
            m.options().iter().flatten().map(String::as_str).filter(|w| options::is_recursive_word(w)).collect();
        let e = nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        let hint = if e == nix::Error::ENOSYS { " (mount_setattr needs Linux 5.12)" } else { "" };
        s.mount_err(format!("recursive attributes {}{hint}", words.join(",")), dest)(e)
    })
}

fn mount_kind(s: &Setup<'_>, root: BorrowedFd<'_>, index: usize, m: &Mount, opts: &options::Options) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(s, root, dest, opts);
    }
    if opts.is_bind() || typ == "bind" {
        return mount_bind(s, root, index, m, opts);
    }
    // Pseudo filesystems the kernel serves must sit on real directories.
    let special = matches!(typ, "proc" | "sysfs");
    // A tmpfs over a directory the image has takes that directory's mode,
    // as with runc; over one made here it keeps its own (`mode=`).
    let kept_mode = match typ {
        "tmpfs" => path::resolve(root, s.rootfs, dest, Create::Nothing, true)
            .ok()
            .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
            .map(|st| st.st_mode & 0o7777),
        _ => None,
    };
    if special {
        ordinary_dir_for(s, root, typ, dest)?;
    }
    // Checked again here, on what is mounted on: never through a symlink.
    let target = path::resolve(root, s.rootfs, dest, Create::Dir, !special)?;
    if special && !path::is_dir(target.as_fd()) {
        return Err(Error::NotDirectory {
            typ: typ.to_owned(),
            dest: dest.to_owned(),
            rootfs: s.rootfs.to_owned(),
            what: "not a directory",
        });
    }
    let target_path = proc_fd_path(target.as_fd());
    let source = m.source().as_deref().map(Path::as_os_str).unwrap_or(typ.as_ref());
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    tracing::debug!(typ, dest = %dest.display(), flags = ?opts.flags, data, "mount");
    let under = if opts.copy_up {
        Some(
            open(&target_path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(sys("open", dest))?,
        )
    } else {
        None
    };
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    match mount(Some(source), &target_path, Some(typ), flags, data) {
        Ok(()) => {}
        // Without a network namespace of its own the container may not
        // mount sysfs, and without an ipc one not mqueue: bind the host's
        // as runc does.
        Err(nix::Error::EPERM) if typ == "sysfs" || typ == "mqueue" => {
            let host = if typ == "sysfs" { "/sys" } else { "/dev/mqueue" };
            mount(Some(host), &target_path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(s.mount_err(format!("{host} (bind)"), dest))?;
            let top = path::resolve(root, s.rootfs, dest, Create::Nothing, !special)?;
            remount_bind(&proc_fd_path(top.as_fd()), dest, opts.flags, opts.cleared)?;
        }
        Err(e) => return Err(s.mount_err(format!("{typ} {}", source.to_string_lossy()), dest)(e)),
    }
    if under.is_some() || kept_mode.is_some() {
        let over = path::resolve(root, s.rootfs, dest, Create::Nothing, !special)?;
        if let Some(under) = under {
            copy_dir(under.as_fd(), over.as_fd()).map_err(|source| Error::Io { op: "copy up", path: dest.to_owned(), source })?;
        }
        if let Some(mode) = kept_mode {
            std::fs::set_permissions(proc_fd_path(over.as_fd()), std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(|source| Error::Io { op: "chmod tmpfs", path: dest.to_owned(), source })?;
        }
    }
    set_propagation(s, root, dest, &opts.propagation, !special)
}

/// `proc` and `sysfs` go on a real directory of the rootfs (or one made
/// here): a rootfs whose `/proc` or `/sys` is a symlink or a file is refused
/// with runc's reason ("must be mounted on ordinary directory"), before
/// anything is mounted. Mounting through such a link would put the kernel's
/// files wherever the image points it.
fn ordinary_dir_for(s: &Setup<'_>, root: BorrowedFd<'_>, typ: &str, dest: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else { return Ok(()) };
    let dir = path::resolve(root, s.rootfs, parent, Create::Dir, true)?;
    let what = match nix::sys::stat::fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => return Ok(()),
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => "it is a symlink",
        Ok(_) => "it is not a directory",
        Err(_) => return Ok(()),
    };
    Err(Error::NotDirectory { typ: typ.to_owned(), dest: dest.to_owned(), rootfs: s.rootfs.to_owned(), what })
}

/// Apply propagation changes to the mount just made at `dest`, reached by
/// resolving it again (an fd opened before the mount is the directory
/// underneath).
fn set_propagation(s: &Setup<'_>, root: BorrowedFd<'_>, dest: &Path, changes: &[MsFlags], final_symlink_ok: bool) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let top = path::resolve(root, s.rootfs, dest, Create::Nothing, final_symlink_ok)?;
    for p in changes {
        mount(None::<&str>, &proc_fd_path(top.as_fd()), None::<&str>, *p, None::<&str>)
            .map_err(s.mount_err("propagation", dest))?;
    }
    Ok(())
}

fn mount_bind(s: &Setup<'_>, root: BorrowedFd<'_>, index: usize, m: &Mount, opts: &options::Options) -> Result<()> {
    let dest = m.destination();
    let source = m.source().as_ref().ok_or_else(|| Error::Config { index, reason: "bind mount without a source".into() })?;
    let source = if source.is_absolute() { source.clone() } else { s.bundle.join(source) };
    let meta =
        std::fs::metadata(&source).map_err(|e| Error::Config { index, reason: format!("source {}: {e}", source.display()) })?;
    let create = if meta.is_dir() { Create::Dir } else { Create::File };
    let target = path::resolve(root, s.rootfs, dest, create, true)?;
    let target_path = proc_fd_path(target.as_fd());
    let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    if let Some((_, tree)) = s.idmapped.iter().find(|(i, _)| *i == index) {
        tracing::debug!(source = %source.display(), dest = %dest.display(), "attach idmapped mount");
        crate::sys::mount::attach_tree(tree.as_fd(), target.as_fd()).map_err(|e| {
            s.mount_err(format!("idmapped {}", source.display()), dest)(nix::Error::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            ))
        })?;
    } else {
        tracing::debug!(source = %source.display(), dest = %dest.display(), ?flags, "bind mount");
        mount(Some(&source), &target_path, None::<&str>, flags, None::<&str>)
            .map_err(s.mount_err(format!("bind {}", source.display()), dest))?;
    }
    // The bind itself ignores every other flag: apply them with a remount of
    // the new mount, opened again so it is the top of the stack.
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        let top = path::resolve(root, s.rootfs, dest, Create::Nothing, true)?;
        remount_bind(&proc_fd_path(top.as_fd()), dest, extra, opts.cleared)?;
    }
    set_propagation(s, root, dest, &opts.propagation, true)
}

/// Remount a bind mount with `flags`, keeping the flags the kernel locks
/// (nosuid, nodev, noexec, the atime mode) unless the options clear them:
/// asking to drop a locked flag fails with EPERM.
fn remount_bind(target: &Path, dest: &Path, flags: MsFlags, cleared: MsFlags) -> Result<()> {
    let mut all = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if let Ok(st) = statvfs(target) {
        let have = st.flags();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            // ST_RELATIME (statvfs(3)), which not every libc names.
            (FsFlags::from_bits_retain(4096), MsFlags::MS_RELATIME),
        ] {
            if have.contains(fs) && !cleared.contains(ms) {
                all |= ms;
            }
        }
    }
    tracing::debug!(dest = %dest.display(), flags = ?all, "remount bind");
    mount(None::<&str>, target, None::<&str>, all, None::<&str>).map_err(sys("remount", dest))
}

/// The `cgroup` mount type: the container's own cgroups, as a cgroup
/// filesystem when it has a cgroup namespace, as binds of its cgroup
/// directories otherwise.
fn mount_cgroup(s: &Setup<'_>, root: BorrowedFd<'_>, dest: &Path, opts: &options::Options) -> Result<()> {
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let target = path::resolve(root, s.rootfs, dest, Create::Dir, false)?;
    let target_path = proc_fd_path(target.as_fd());
    let v2_only =
        s.cgroup_mounts.len() == 1 && s.cgroup_mounts[0].version == cgroups::Version::V2 && s.cgroup_mounts[0].name.is_empty();
    if v2_only {
        if mount_cgroup_dir(s, &target_path, dest, &s.cgroup_mounts[0], flags)? {
            let t = path::resolve(root, s.rootfs, dest, Create::Nothing, false)?;
            remount_bind(
                &proc_fd_path(t.as_fd()),
                dest,
                flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                MsFlags::empty(),
            )?;
        }
        return Ok(());
    }
    // v1 (and hybrid): a tmpfs holding one directory per hierarchy.
    mount(
        Some("tmpfs"),
        &target_path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(s.mount_err("cgroup tmpfs", dest))?;
    let top = path::resolve(root, s.rootfs, dest, Create::Nothing, false)?;
    let sub_root = s.rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
    let bind_flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut binds = Vec::new();
    for src in &s.cgroup_mounts {
        let sub = dest.join(&src.name);
        let t = path::resolve(top.as_fd(), &sub_root, Path::new(&src.name), Create::Dir, false)?;
        if mount_cgroup_dir(s, &proc_fd_path(t.as_fd()), &sub, src, flags)? {
            binds.push((src.name.as_str(), sub));
        }
        // Co-mounted controllers (cpu,cpuacct) are also reachable by each name.
        if src.name.contains(',') {
            for alias in src.name.split(',') {
                let _ = nix::unistd::symlinkat(src.name.as_str(), top.as_fd(), alias);
            }
        }
    }
    // The binds' flags: one recursive mount_setattr on the tmpfs reaches
    // every bind below it, instead of a lookup, a statvfs and a remount per
    // hierarchy (ten of each on a v1 host). Only when every hierarchy is a
    // bind (cgroup filesystems mounted in a cgroup namespace keep their own
    // flags); a kernel without mount_setattr, or a flag it cannot set, takes
    // the remounts.
    let all_binds = binds.len() == s.cgroup_mounts.len();
    let flags_set = binds.is_empty() || (all_binds && set_tree_flags(top.as_fd(), bind_flags, dest));
    if !flags_set {
        for (name, sub) in &binds {
            let t = path::resolve(top.as_fd(), &sub_root, Path::new(name), Create::Nothing, false)?;
            remount_bind(&proc_fd_path(t.as_fd()), sub, bind_flags, MsFlags::empty())?;
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            &proc_fd_path(top.as_fd()),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(s.mount_err("cgroup tmpfs read-only", dest))?;
    }
    Ok(())
}

/// Set the per-mount `flags` on the mount open as `top` and every mount
/// below it with one `mount_setattr(AT_RECURSIVE)`; false when that cannot
/// be done (no mount_setattr, a flag it has no attribute for, a refusal),
/// and the caller remounts instead. Flags not named (a locked atime mode,
/// say) stay as they are, as [`remount_bind`] keeps them.
fn set_tree_flags(top: BorrowedFd<'_>, flags: MsFlags, dest: &Path) -> bool {
    use crate::sys::mount as m;
    let mut set = 0;
    let mut clear = 0;
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, m::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, m::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, m::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, m::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, m::MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(ms) {
            set |= attr;
        }
    }
    for (ms, mode) in [
        (MsFlags::MS_RELATIME, m::MOUNT_ATTR_RELATIME),
        (MsFlags::MS_NOATIME, m::MOUNT_ATTR_NOATIME),
        (MsFlags::MS_STRICTATIME, m::MOUNT_ATTR_STRICTATIME),
    ] {
        if flags.contains(ms) {
            set |= mode;
            clear = m::MOUNT_ATTR__ATIME;
        }
    }
    let known = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_NODIRATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_NOATIME
        | MsFlags::MS_STRICTATIME;
    if !(flags & !known).is_empty() {
        return false;
    }
    match m::set_attributes(top, set, clear, true) {
        Ok(()) => {
            tracing::debug!(dest = %dest.display(), set = format_args!("{set:#x}"), clear = format_args!("{clear:#x}"), "cgroup binds: recursive mount attributes");
            true
        }
        Err(e) => {
            tracing::debug!(dest = %dest.display(), error = %e, "cgroup binds: no recursive mount attributes, remounting each");
            false
        }
    }
}

/// Mount one hierarchy's view; returns true when it was a bind that still
/// needs its flags applied by a remount.
fn mount_cgroup_dir(s: &Setup<'_>, target: &Path, dest: &Path, src: &MountSource, flags: MsFlags) -> Result<bool> {
    if s.cgroup_ns {
        let (fstype, data) = match src.version {
            cgroups::Version::V2 => ("cgroup2", String::new()),
            cgroups::Version::V1 => ("cgroup", src.controllers.join(",")),
        };
        let data = (!data.is_empty()).then_some(data.as_str());
        tracing::debug!(fstype, data, dest = %dest.display(), "mount cgroup fs");
        match mount(Some(fstype), target, Some(fstype), flags, data) {
            Ok(()) => return Ok(false),
            // A v1 hierarchy this kernel lets only one mount have (or a
            // named one): fall back to the bind below.
            Err(e @ (nix::Error::EBUSY | nix::Error::EPERM | nix::Error::EINVAL)) if src.version == cgroups::Version::V1 => {
                tracing::debug!(error = %e, dest = %dest.display(), "cgroup fs mount refused, binding instead");
            }
            Err(e) => return Err(s.mount_err(fstype, dest)(e)),
        }
    }
    tracing::debug!(host = %src.host_dir.display(), dest = %dest.display(), "bind cgroup dir");
    mount(Some(&src.host_dir), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(s.mount_err(format!("cgroup {}", src.host_dir.display()), dest))?;
    Ok(true)
}

/// `tmpcopyup`: copy what the directory held before the tmpfs went over
/// it into the tmpfs, keeping kinds, modes, owners and links.
fn copy_dir(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, SFlag};
    use nix::unistd::{fchownat, symlinkat, Gid, Uid};
    let dir = nix::dir::Dir::openat(from, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let names: Vec<std::ffi::CString> = dir
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.to_bytes() != b"." && n.to_bytes() != b"..")
        .collect();
    for name in names {
        let name = name.as_c_str();
        let st = fstatat(from, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(to, name, perm)?;
                let src = nix::fcntl::openat(
                    from,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let dst = nix::fcntl::openat(
                    to,
                    name,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                copy_dir(src.as_fd(), dst.as_fd())?;
            }
            SFlag::S_IFREG => {
                let src = nix::fcntl::openat(from, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
                let dst = nix::fcntl::openat(
                    to,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    perm,
                )?;
                std::io::copy(&mut std::fs::File::from(src), &mut std::fs::File::from(dst))?;
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(from, name)?;
                symlinkat(target.as_os_str(), to, name)?;
            }
            _ => mknodat(to, name, kind, perm, st.st_rdev)?,
        }
        fchownat(
            to,
            name,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if kind != SFlag::S_IFLNK {
            // Explicitly, so the process umask does not strip bits.
            fchmodat(to, name, perm, FchmodatFlags::FollowSymlink)?;
        }
    }
    Ok(())
}

/// Whether `spec` lists a mount namespace (new or joined).
pub fn has_mount_ns(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    namespaces.into_iter().flatten().any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
}

/// After a container without a mount namespace of its own (its `delete`, or
/// a failed `create`): detach the bind of the rootfs on itself made in the
/// runtime's namespace, and with it every mount below. Only such a bind is
/// detached (the same filesystem and directory of it as the mount
/// underneath), never a rootfs that is a mount of its own (an overlay, a
/// tmpfs); run again, it finds nothing to do.
pub fn detach_shared(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| Error::Io {
        op: "read",
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let entries = crate::mountinfo::parse(&info);
    // The topmost mount at the rootfs, and the mount it covers (the last
    // one at the longest prefix of the path before it).
    let Some(top) = entries.iter().rposition(|e| e.mount_point == rootfs) else {
        return Ok(());
    };
    let under =
        entries[..top].iter().filter(|e| rootfs.starts_with(&e.mount_point)).max_by_key(|e| e.mount_point.as_os_str().len());
    let top = &entries[top];
    let self_bind = under.is_some_and(|u| {
        let rel = rootfs.strip_prefix(&u.mount_point).unwrap_or(rootfs);
        u.dev == top.dev && u.root.join(rel) == top.root
    });
    if !self_bind {
        tracing::debug!(rootfs = %rootfs.display(), "the rootfs mount is not a bind on itself: left alone");
        return Ok(());
    }
    tracing::debug!(rootfs = %rootfs.display(), "detach the rootfs bind made in the runtime's mount namespace");
    match umount2(rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(sys("detach the rootfs bind", rootfs)(e)),
    }
}

/// Enter the rootfs: it becomes `/` and the host's tree is detached. In the
/// runtime's own mount namespace only a `chroot` (see the module docs).
pub fn enter(s: &Setup<'_>, no_pivot: bool) -> Result<()> {
    let rootfs = s.rootfs;
    if !s.own_mount_ns() {
        tracing::debug!(rootfs = %rootfs.display(), "chroot (no mount namespace of its own)");
        chdir(rootfs).map_err(sys("chdir", rootfs))?;
        chroot(".").map_err(sys("chroot", rootfs))?;
        chdir("/").map_err(sys("chdir", "/"))?;
        return Ok(());
    }
    if no_pivot {
        chdir(rootfs).map_err(sys("chdir", rootfs))?;
        mount(Some(rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sys("move mount to /", rootfs))?;
        chroot(".").map_err(sys("chroot", rootfs))?;
        chdir("/").map_err(sys("chdir", "/"))?;
        return Ok(());
    }
    let old = open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", "/"))?;
    let new =
        open(rootfs, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", rootfs))?;
    fchdir(&new).map_err(sys("fchdir", rootfs))?;
    tracing::debug!(rootfs = %rootfs.display(), "pivot_root");
    pivot_root(".", ".").map_err(sys("pivot_root", rootfs))?;
    // The old root is now stacked under the new one at "/"; detach it
    // without letting the unmount propagate back to the host.
    fchdir(&old).map_err(sys("fchdir", "old root"))?;
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(sys("make old root slave", "/"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("unmount old root", "/"))?;
    chdir("/").map_err(sys("chdir", "/"))?;
    Ok(())
}

/// After [`enter`]: sysctls, read-only and masked paths, read-only root,
/// and the configured propagation of `/`.
pub fn finalize(s: &Setup<'_>) -> Result<()> {
    let linux = s.spec.linux().as_ref();
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        let mut keys: Vec<_> = sysctl.iter().collect();
        keys.sort();
        for (key, value) in keys {
            let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            tracing::debug!(key, value, "sysctl");
            std::fs::write(&path, value).map_err(|source| Error::Io { op: "write sysctl", path, source })?;
        }
    }
    // Relative paths are relative to the container's root (runc's reading).
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        readonly_path(&Path::new("/").join(p))?;
    }
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        mask_path(&Path::new("/").join(p))?;
    }
    if s.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        tracing::debug!("remount / read-only");
        remount_bind(Path::new("/"), Path::new("/"), MsFlags::MS_RDONLY, MsFlags::empty())?;
    }
    let propagation = s.root_propagation();
    if s.own_mount_ns() && propagation.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
        mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>).map_err(sys("set propagation of", "/"))?;
    }
    Ok(())
}

/// Open a path of the (entered) rootfs without following a final symlink,
/// so a path swapped for a link during setup is not what gets covered.
fn open_nofollow(p: &Path) -> Result<Option<OwnedFd>> {
    match open(p, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::Error::ENOENT) => Ok(None),
        Err(e) => Err(sys("open", p)(e)),
    }
}

/// For a path of `field` that is a symlink (`fd` opened without following
/// it): whether to go on covering the link itself. The link is never
/// followed for the mount (a link swapped in would redirect it), only
/// looked through, as runc's mount would: a link that loops fails the
/// create as it does with runc, a dangling one is left alone as runc leaves
/// it.
fn symlink_to_cover(field: &'static str, p: &Path, fd: BorrowedFd<'_>) -> Result<bool> {
    let is_link = nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
    if !is_link {
        return Ok(true);
    }
    match nix::sys::stat::stat(p) {
        Ok(_) => Ok(true),
        Err(nix::Error::ENOENT) => {
            tracing::debug!(field, path = %p.display(), "dangling symlink left as it is");
            Ok(false)
        }
        Err(e) => {
            let why = if e == nix::Error::ELOOP { "too many levels of symbolic links".to_owned() } else { e.to_string() };
            Err(Error::Path { field, path: p.to_owned(), reason: format!("a symlink that cannot be resolved: {why}") })
        }
    }
}

fn readonly_path(p: &Path) -> Result<()> {
    let Some(fd) = open_nofollow(p)? else { return Ok(()) };
    if !symlink_to_cover("linux.readonlyPaths", p, fd.as_fd())? {
        return Ok(());
    }
    let target = proc_fd_path(fd.as_fd());
    tracing::debug!(path = %p.display(), "read-only path");
    mount(Some(&target), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(sys("bind read-only path", p))?;
    let top = open_nofollow(p)?.ok_or_else(|| sys("open", p)(nix::Error::ENOENT))?;
    remount_bind(&proc_fd_path(top.as_fd()), p, MsFlags::MS_RDONLY | MsFlags::MS_REC, MsFlags::empty())
}

fn mask_path(p: &Path) -> Result<()> {
    let Some(fd) = open_nofollow(p)? else { return Ok(()) };
    if !symlink_to_cover("linux.maskedPaths", p, fd.as_fd())? {
        return Ok(());
    }
    let target = proc_fd_path(fd.as_fd());
    tracing::debug!(path = %p.display(), "mask path");
    let res = if path::is_dir(fd.as_fd()) {
        mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
    } else {
        mount(Some("/dev/null"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    };
    match res {
        Ok(()) => Ok(()),
        // A symlink is left as it is: covering it would cover its target.
        Err(nix::Error::ENOTDIR) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(sys("mask", p)(e)),
    }
}
