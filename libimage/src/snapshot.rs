//! Container snapshots: a container's rootfs is an overlayfs of read-only
//! unpacked layers (unpack.rs) with its own `upper` and `work` directories
//! under `snapshots/<id>/` (a layout `delete` knows too:
//! `libcontainer::image_bundle`, which unmounts and removes a snapshot).
//!
//! The overlay is created with the new mount API: `fsopen("overlay")` and one
//! `fsconfig("lowerdir+", path)` per layer (Linux 6.8), so an image with
//! hundreds of layers mounts fine. Older kernels reject `lowerdir+`; then a
//! `mount(2)` is used whose `lowerdir=` names each layer by a short
//! `/proc/self/fd/<n>` path of an `O_PATH` fd, which keeps the option string
//! under the one-page limit for ~200 layers (full layer paths would hit it at
//! ~50) without changing the process's working directory (the library may
//! run on several threads) and without leaving symlinks behind.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::{create_dir_all, write_atomic, Error, Result};
use libcontainer::sys;

/// `snapshots/<id>/meta.json`.
#[derive(Serialize, Deserialize)]
struct Meta {
    version: u32,
    /// Chain IDs of the layers, in the order the caller gave them.
    chains: Vec<Digest>,
    /// Where the overlay was mounted.
    target: PathBuf,
}

const META_VERSION: u32 = 1;

/// The snapshots under `<root>/snapshots/`.
#[derive(Clone, Debug)]
pub struct Snapshots {
    /// The image root.
    root: PathBuf,
    /// `<root>/snapshots`.
    dir: PathBuf,
}

impl Snapshots {
    /// Open the snapshots of the image root `root`.
    pub fn open(root: &Path) -> Result<Snapshots> {
        let dir = root.join("snapshots");
        create_dir_all(&dir)?;
        // Upper dirs hold what containers wrote, owned by container users: keep host users out.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("chmod 0700", &dir, e))?;
        Ok(Snapshots { root: root.to_owned(), dir })
    }

    /// `snapshots/<id>`.
    pub fn path(&self, id: &str) -> PathBuf {
        libcontainer::image_bundle::snapshot_dir(&self.root, id)
    }

    /// Make `snapshots/<id>/{upper,work}`, record `chains` in its
    /// `meta.json`, and mount an overlay of `lowers` (layer `fs` directories,
    /// top-most first) at `target`. On failure nothing is left behind.
    pub fn prepare(&self, id: &str, chains: &[Digest], lowers: &[PathBuf], target: &Path) -> Result<()> {
        check_id(id)?;
        let dir = self.path(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Invalid(format!("prepare snapshot {id}: {} already exists", dir.display())));
            }
            Err(e) => return Err(Error::io(format!("create snapshot {id}"), dir, e)),
        }
        let result = (|| {
            let (upper, work) = (dir.join("upper"), dir.join("work"));
            create_dir_all(&upper)?;
            create_dir_all(&work)?;
            // Recorded before the mount, so a prune that runs meanwhile already sees the layers in use.
            let meta = Meta { version: META_VERSION, chains: chains.to_vec(), target: target.to_owned() };
            let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Json {
                op: "encode snapshot metadata".into(),
                path: dir.join("meta.json"),
                source: e,
            })?;
            write_atomic(&dir.join("meta.json"), &json)?;
            let mut lowers = lowers.to_vec();
            if lowers.is_empty() {
                // An image without layers: overlay wants at least one lower.
                let empty = dir.join("empty");
                create_dir_all(&empty)?;
                lowers.push(empty);
            }
            mount_overlay(&lowers, &upper, &work, target)
        })();
        if let Err(e) = result {
            if let Err(rm) = fs::remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), error = %rm, "remove failed snapshot");
            }
            return Err(e);
        }
        tracing::debug!(id, target = %target.display(), layers = lowers.len(), "prepared snapshot");
        Ok(())
    }

    /// Unmount `target` if an overlay is mounted there, and remove
    /// `snapshots/<id>`. A missing snapshot is not an error.
    pub fn remove(&self, id: &str, target: Option<&Path>) -> Result<()> {
        check_id(id)?;
        if let Some(target) = target {
            libcontainer::image_bundle::unmount_overlay(target)?;
        }
        let dir = self.path(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove snapshot {id}"), dir, e)),
        }
    }

    /// Every snapshot and the chain IDs it uses, sorted by id.
    pub fn list(&self) -> Result<Vec<(String, Vec<Digest>)>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("list snapshots in", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list snapshots in", &self.dir, e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let path = entry.path().join("meta.json");
            let text = match fs::read(&path) {
                Ok(t) => t,
                // Being created or removed right now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read snapshot metadata", path, e)),
            };
            let meta: Meta = serde_json::from_slice(&text).map_err(|e| Error::Json {
                op: "parse snapshot metadata".into(),
                path,
                source: e,
            })?;
            out.push((id, meta.chains));
        }
        out.sort();
        Ok(out)
    }
}

/// A snapshot id is one path component; container ids (runc's rule:
/// letters, digits, `_ + - .`, not `.` or `..`) fit, up to a file name's 255 bytes.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("invalid snapshot id {id:?}: want 1-255 of [A-Za-z0-9_+-.], not \".\" or \"..\"")))
    }
}

/// Whether the kernel takes `lowerdir+` (0 = not known yet, 1 = yes, 2 = no).
static LOWERDIR_PLUS: AtomicU8 = AtomicU8::new(0);

fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    if LOWERDIR_PLUS.load(Ordering::Relaxed) != 2 {
        match mount_new_api(lowers, upper, work, target) {
            Ok(()) => {
                LOWERDIR_PLUS.store(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(NewApi::Unsupported(why)) => {
                tracing::debug!(why, "overlay lowerdir+ unsupported; using mount(2)");
                LOWERDIR_PLUS.store(2, Ordering::Relaxed);
            }
            Err(NewApi::Failed(e)) => return Err(e),
        }
    }
    mount_legacy(lowers, upper, work, target)
}

enum NewApi {
    /// The kernel lacks the new mount API or `lowerdir+`: fall back.
    Unsupported(String),
    Failed(Error),
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Invalid(format!("path {} contains a NUL byte", p.display())))
}

/// The messages the kernel left in a filesystem context ("e overlay: ...").
fn fs_log(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // Each read returns one message; EAGAIN/ENODATA when there are none left.
    while let Ok(n @ 1..) = nix::unistd::read(fs, &mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out.join("; ")
}

fn mount_new_api(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> std::result::Result<(), NewApi> {
    let failed = |op: &str, path: &Path, e: io::Error, fs: Option<&OwnedFd>| {
        let log = fs.map(fs_log).filter(|l| !l.is_empty());
        let e = match log {
            Some(log) => io::Error::new(e.kind(), format!("{e} ({log})")),
            None => e,
        };
        NewApi::Failed(Error::io(format!("{op} for the overlay on {}", target.display()), path, e))
    };
    let fs = match sys::overlay::fsopen(c"overlay") {
        Ok(fs) => fs,
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Err(NewApi::Unsupported(format!("fsopen: {e}"))),
        Err(e) => return Err(failed("fsopen(overlay)", Path::new("overlay"), e, None)),
    };
    // Before 6.5 overlayfs parses its options only at mount time (the
    // kernel's legacy fs_context takes any key), so `lowerdir+` would be
    // accepted here and refused at create: ask once whether an unknown key
    // is refused, i.e. whether overlayfs checks its parameters itself.
    // (Not "unknown" only: another thread may have found out meanwhile.)
    if LOWERDIR_PLUS.load(Ordering::Relaxed) != 1 {
        let probe = sys::overlay::fsopen(c"overlay").map_err(|e| failed("fsopen(overlay)", Path::new("overlay"), e, None))?;
        if sys::overlay::fsconfig_set_flag(probe.as_fd(), c"roci-probe-unknown-parameter").is_ok() {
            return Err(NewApi::Unsupported("overlayfs takes its options as one string (Linux < 6.5)".into()));
        }
    }
    // fsconfig takes strings of at most 255 bytes; a longer path is named
    // by an O_PATH fd held until the mount is made.
    let mut held = Vec::new();
    let mut short = |p: &Path| -> std::result::Result<CString, NewApi> {
        if p.as_os_str().len() < 256 {
            return cpath(p).map_err(NewApi::Failed);
        }
        let fd = open(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| NewApi::Failed(Error::io(format!("open layer for the overlay on {}", target.display()), p, e.into())))?;
        let c = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
        held.push(fd);
        Ok(c)
    };
    for (i, lower) in lowers.iter().enumerate() {
        let c = short(lower)?;
        if let Err(e) = sys::overlay::fsconfig_set_string(fs.as_fd(), c"lowerdir+", &c) {
            if i == 0 && e.raw_os_error() == Some(libc::EINVAL) {
                // Before 6.8 the kernel logs "overlay: Unknown parameter 'lowerdir+'".
                let log = fs_log(&fs);
                if log.is_empty() || log.contains("Unknown parameter") {
                    return Err(NewApi::Unsupported(format!("fsconfig lowerdir+: {e} {log}")));
                }
                let e = io::Error::new(e.kind(), format!("{e} ({log})"));
                return Err(failed("add lower layer", lower, e, None));
            }
            return Err(failed("add lower layer", lower, e, Some(&fs)));
        }
    }
    for (key, path) in [(c"upperdir", upper), (c"workdir", work)] {
        let c = short(path)?;
        sys::overlay::fsconfig_set_string(fs.as_fd(), key, &c)
            .map_err(|e| failed(&format!("set {}", key.to_string_lossy()), path, e, Some(&fs)))?;
    }
    sys::overlay::fsconfig_create(fs.as_fd()).map_err(|e| failed("create", upper, e, Some(&fs)))?;
    let mnt = sys::overlay::fsmount(fs.as_fd()).map_err(|e| failed("fsmount", upper, e, Some(&fs)))?;
    let target_fd = open(target, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| failed("open mount target", target, e.into(), None))?;
    sys::mount::attach_tree(mnt.as_fd(), target_fd.as_fd()).map_err(|e| failed("move_mount", target, e, None))?;
    tracing::debug!(target = %target.display(), layers = lowers.len(), "mounted overlay (lowerdir+)");
    Ok(())
}

/// `mount(2)` with every directory named by a `/proc/self/fd/<n>` path.
pub(crate) fn mount_legacy(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let open_dir = |p: &Path| {
        open(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::io(format!("open layer for the overlay on {}", target.display()), p, e.into()))
    };
    let fd_path = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    let lower_fds = lowers.iter().map(|p| open_dir(p)).collect::<Result<Vec<_>>>()?;
    let (upper_fd, work_fd) = (open_dir(upper)?, open_dir(work)?);
    let lowerdir = lower_fds.iter().map(fd_path).collect::<Vec<_>>().join(":");
    let data = format!("lowerdir={lowerdir},upperdir={},workdir={}", fd_path(&upper_fd), fd_path(&work_fd));
    // The kernel copies at most one page of mount data.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as usize;
    if data.len() >= page {
        return Err(Error::Invalid(format!(
            "mount overlay on {}: {} layers need {} bytes of options, more than mount(2) takes ({page}); this kernel lacks lowerdir+",
            target.display(),
            lowers.len(),
            data.len()
        )));
    }
    mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(|e| Error::io(format!("mount overlay of {} layers on", lowers.len()), target, e.into()))?;
    tracing::debug!(target = %target.display(), layers = lowers.len(), "mounted overlay (mount(2))");
    Ok(())
}

#[cfg(test)]
mod tests {
    use nix::mount::{umount2, MntFlags};

    use super::*;
    use crate::unpack::tests::{env, Tar};

    /// Unmounts on drop, so a failing test leaves no mount behind.
    struct MountGuard(PathBuf);

    impl Drop for MountGuard {
        fn drop(&mut self) {
            while umount2(&self.0, MntFlags::MNT_DETACH).is_ok() {}
        }
    }

    fn is_mounted(target: &Path) -> bool {
        let target = fs::canonicalize(target).unwrap();
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
        libcontainer::mountinfo::parse(&text).iter().any(|m| m.mount_point == target)
    }

    #[test]
    fn three_layers_merge_whiteout_and_write_to_upper() {
        let env = env();
        let root = env.dir.path().join("root");
        let snaps = Snapshots::open(&root).unwrap();
        let (c1, l1) = env.unpack_on(
            &Tar::new().file("a", b"1").file("b", b"lower").file("d/x", b"x").dir("o/").file("o/old", b"").finish(),
            None,
        );
        let (c2, l2) = env.unpack_on(
            &Tar::new().file("a", b"2").file(".wh.b", b"").file("o/.wh..wh..opq", b"").file("o/new", b"").finish(),
            Some(&c1),
        );
        let (c3, l3) = env.unpack_on(&Tar::new().file("c", b"3").finish(), Some(&c2));
        let target = env.dir.path().join("rootfs");
        fs::create_dir(&target).unwrap();
        let _guard = MountGuard(target.clone());
        let chains = vec![c1.clone(), c2.clone(), c3.clone()];
        snaps.prepare("ctr-1", &chains, &[l3, l2, l1.clone()], &target).unwrap();
        assert!(is_mounted(&target));
        assert_eq!(fs::read(target.join("a")).unwrap(), b"2");
        assert!(!target.join("b").exists(), "whiteout hides the lower b");
        assert_eq!(fs::read(target.join("c")).unwrap(), b"3");
        assert_eq!(fs::read(target.join("d/x")).unwrap(), b"x");
        assert!(target.join("o/new").exists() && !target.join("o/old").exists(), "opaque dir hides lower contents");

        fs::write(target.join("new"), b"written").unwrap();
        fs::write(target.join("d/x"), b"changed").unwrap();
        let upper = snaps.path("ctr-1").join("upper");
        assert_eq!(fs::read(upper.join("new")).unwrap(), b"written");
        assert_eq!(fs::read(upper.join("d/x")).unwrap(), b"changed");
        assert_eq!(fs::read(l1.join("d/x")).unwrap(), b"x", "lower layer untouched");

        assert_eq!(snaps.list().unwrap(), vec![("ctr-1".to_owned(), chains.clone())]);
        let err = snaps.prepare("ctr-1", &chains, std::slice::from_ref(&l1), &target).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");

        snaps.remove("ctr-1", Some(&target)).unwrap();
        assert!(!is_mounted(&target));
        assert!(!snaps.path("ctr-1").exists());
        assert!(snaps.list().unwrap().is_empty());
        snaps.remove("ctr-1", Some(&target)).unwrap(); // missing: Ok
        assert!(target.is_dir() && fs::read_dir(&target).unwrap().count() == 0);
    }

    #[test]
    fn failure_leaves_nothing() {
        let env = env();
        let snaps = Snapshots::open(&env.dir.path().join("root")).unwrap();
        let target = env.dir.path().join("rootfs");
        fs::create_dir(&target).unwrap();
        let _guard = MountGuard(target.clone());
        let missing = env.dir.path().join("no-such-layer");
        let err = snaps.prepare("bad", &[], std::slice::from_ref(&missing), &target).unwrap_err();
        assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
        assert!(!snaps.path("bad").exists());
        assert!(!is_mounted(&target));
        for id in ["", ".", "..", "../x", "a/b", "a:b", &"x".repeat(256)] {
            assert!(matches!(snaps.prepare(id, &[], &[], &target), Err(Error::Invalid(_))), "{id:?}");
        }
    }

    fn many_layers(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        // Layer paths as long as real ones: layers/<64 hex>/fs.
        let lowers: Vec<PathBuf> = (0..n)
            .map(|i| {
                let p = dir.path().join("layers").join(Digest::sha256_of(&i.to_le_bytes()).hex()).join("fs");
                fs::create_dir_all(&p).unwrap();
                fs::write(p.join(format!("f{i}")), i.to_string()).unwrap();
                fs::write(p.join("top"), i.to_string()).unwrap();
                p
            })
            .collect();
        (dir, lowers)
    }

    fn check_many(target: &Path, n: usize) {
        for i in 0..n {
            assert_eq!(fs::read_to_string(target.join(format!("f{i}"))).unwrap(), i.to_string());
        }
        // lowers[0] is the top-most.
        assert_eq!(fs::read_to_string(target.join("top")).unwrap(), "0");
    }

    #[test]
    fn many_layers_mount() {
        let (dir, lowers) = many_layers(128);
        let snaps = Snapshots::open(dir.path()).unwrap();
        let target = dir.path().join("rootfs");
        fs::create_dir(&target).unwrap();
        let _guard = MountGuard(target.clone());
        snaps.prepare("big", &[], &lowers, &target).unwrap();
        check_many(&target, 128);
        let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
        let mut v = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
        if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 8) {
            assert_eq!(LOWERDIR_PLUS.load(Ordering::Relaxed), 1, "Linux {release} takes lowerdir+");
        }
        snaps.remove("big", Some(&target)).unwrap();
        assert!(!is_mounted(&target));
    }

    /// The mount(2) fallback for kernels without lowerdir+, forced.
    #[test]
    fn many_layers_mount_legacy() {
        let (dir, lowers) = many_layers(128);
        let target = dir.path().join("rootfs");
        let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
        for d in [&target, &upper, &work] {
            fs::create_dir(d).unwrap();
        }
        let _guard = MountGuard(target.clone());
        mount_legacy(&lowers, &upper, &work, &target).unwrap();
        check_many(&target, 128);
        fs::write(target.join("w"), b"").unwrap();
        assert!(upper.join("w").exists());
        libcontainer::image_bundle::unmount_overlay(&target).unwrap();
        assert!(!is_mounted(&target));
        // Too many for one page of options: a clear error, not a kernel EINVAL.
        let (_dir2, lowers) = many_layers(300);
        let err = mount_legacy(&lowers, &upper, &work, &target).unwrap_err();
        assert!(err.to_string().contains("300 layers"), "{err}");
    }

    /// fsconfig takes at most 255 bytes per string: longer layer paths still mount.
    #[test]
    fn long_layer_paths() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("r".repeat(200));
        let (snaps, target) = (Snapshots::open(&deep).unwrap(), dir.path().join("rootfs"));
        let lower = deep.join("layers").join("l".repeat(100));
        fs::create_dir_all(&lower).unwrap();
        fs::write(lower.join("f"), b"deep").unwrap();
        fs::create_dir(&target).unwrap();
        let _guard = MountGuard(target.clone());
        snaps.prepare("long", &[], std::slice::from_ref(&lower), &target).unwrap();
        assert_eq!(fs::read(target.join("f")).unwrap(), b"deep");
        snaps.remove("long", Some(&target)).unwrap();
        assert!(!is_mounted(&target));
    }

    #[test]
    fn no_layers() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(dir.path()).unwrap();
        let target = dir.path().join("rootfs");
        fs::create_dir(&target).unwrap();
        let _guard = MountGuard(target.clone());
        snaps.prepare("scratch", &[], &[], &target).unwrap();
        fs::write(target.join("x"), b"").unwrap();
        snaps.remove("scratch", Some(&target)).unwrap();
        assert!(!is_mounted(&target));
    }
}
