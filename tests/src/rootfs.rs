//! A busybox-static root filesystem per test.
//!
//! Debian's `/bin/busybox` (package busybox-static) is copied once per machine into a cache directory under
//! the system temp dir; each test's rootfs hardlinks that copy (a copy when linking is impossible), symlinks
//! every applet in /bin, and gets /etc/passwd and /etc/group with root, nobody and a test user.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The unprivileged test user in the rootfs: uid 1000, primary gid 1000, also in group `extra` (1001).
pub const TEST_UID: u32 = 1000;
pub const TEST_GID: u32 = 1000;
pub const EXTRA_GID: u32 = 1001;

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
test:x:1000:1000:test user:/home/test:/bin/sh\n";

pub const GROUP: &str = "root:x:0:\n\
tty:x:5:\n\
test:x:1000:\n\
extra:x:1001:test\n\
nogroup:x:65534:\n";

struct Template {
    busybox: PathBuf,
    applets: Vec<String>,
}

static TEMPLATE: OnceLock<Template> = OnceLock::new();

fn template() -> &'static Template {
    TEMPLATE.get_or_init(|| {
        let meta = fs::metadata(HOST_BUSYBOX).unwrap_or_else(|e| panic!("{HOST_BUSYBOX}: {e} (install Debian's busybox-static)"));
        let out = std::process::Command::new(HOST_BUSYBOX).arg("--list").output().expect("busybox --list");
        assert!(out.status.success(), "busybox --list failed");
        let applets = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            // The binary itself is copied, not linked; never let an applet named `busybox` replace it.
            .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
            .map(String::from)
            .collect();
        let cache = std::env::temp_dir().join("roci-it-cache");
        fs::create_dir_all(&cache).expect("create rootfs cache dir");
        let busybox = cache.join(format!("busybox-{}-{}", meta.size(), meta.mtime()));
        if !busybox.exists() {
            let tmp = cache.join(format!(".busybox-{}", std::process::id()));
            fs::copy(HOST_BUSYBOX, &tmp).expect("copy busybox into the cache");
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod busybox");
            fs::rename(&tmp, &busybox).expect("rename busybox into the cache");
        }
        Template { busybox, applets }
    })
}

/// Populate `rootfs` (created if missing) with busybox, its applets and a minimal /etc.
pub fn build(rootfs: &Path) {
    let t = template();
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/test", "mnt", "var/run"] {
        fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod /tmp");
    std::os::unix::fs::chown(rootfs.join("home/test"), Some(TEST_UID), Some(TEST_GID)).expect("chown home");
    let bb = rootfs.join("bin/busybox");
    if fs::hard_link(&t.busybox, &bb).is_err() {
        fs::copy(&t.busybox, &bb).expect("copy busybox into rootfs");
    }
    for a in &t.applets {
        symlink("busybox", rootfs.join("bin").join(a)).expect("symlink applet");
    }
    // Some programs look in /usr/bin and /sbin too.
    symlink("bin", rootfs.join("sbin")).expect("symlink /sbin");
    fs::create_dir_all(rootfs.join("usr")).expect("mkdir /usr");
    symlink("../bin", rootfs.join("usr/bin")).expect("symlink /usr/bin");
    fs::write(rootfs.join("etc/passwd"), PASSWD).expect("write passwd");
    fs::write(rootfs.join("etc/group"), GROUP).expect("write group");
    fs::write(rootfs.join("etc/hosts"), "127.0.0.1 localhost\n").expect("write hosts");
}

/// Give every file of `rootfs` to `uid:gid` (`lchown`, symlinks not followed), for a container whose user
/// namespace maps its root to those host ids. The busybox binary is a hardlink of the shared cache copy:
/// it is replaced by a private copy first, so the cache and other tests' rootfs keep their owner.
pub fn chown_tree(rootfs: &Path, uid: u32, gid: u32) {
    let bb = rootfs.join("bin/busybox");
    let private = rootfs.join("bin/.busybox-private");
    fs::copy(&bb, &private).expect("copy busybox out of the shared cache");
    fs::rename(&private, &bb).expect("replace the hardlinked busybox");
    lchown_tree(rootfs, uid, gid);
}

fn lchown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())) {
            lchown_tree(&entry.expect("dir entry").path(), uid, gid);
        }
    }
}
