//! Path escapes: mount destinations are resolved inside the rootfs, whatever symlinks and `..` the rootfs
//! or the config contains. A runtime that follows `/escape -> /../../<host dir>` on the host would create
//! directories in, or mount over, a host directory.

use std::os::unix::fs::symlink;
use std::path::Path;

use roci_integration::Container;

use crate::section;

fn assert_host_dir_untouched(dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(entries.is_empty(), "host dir {} must stay empty, has {entries:?}", dir.display());
    let mounts = roci_integration::container::mounts_below(dir);
    assert!(mounts.is_empty(), "host dir {} must stay unmounted: {mounts:?}", dir.display());
}

/// `/escape -> /../../../../<victim>` (absolute with `..`) and `/rel -> ../../../../../<victim>` (relative)
/// in the rootfs; bind mounts with destinations through them land inside the rootfs.
#[test]
fn path_escape_symlink_destination() {
    let mut c = Container::new("path_escape_symlink");
    let victim = c.host_path("victim");
    std::fs::create_dir(&victim).unwrap();
    let src = c.host_path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("marker"), "bound\n").unwrap();
    let v = victim.to_str().unwrap().trim_start_matches('/');
    symlink(format!("/../../../../{v}"), c.rootfs.join("escape")).unwrap();
    symlink(format!("../../../../../../{v}"), c.rootfs.join("rel")).unwrap();
    c.spec
        .bind(&src, "/escape/sub", true)
        .bind(&src, "/rel/relsub", true)
        .add_mount("/escape/tmp", "tmpfs", "tmpfs", &["size=1m"])
        .sh("echo \"== abs ==\"; cat /escape/sub/marker; echo \"== rel ==\"; cat /rel/relsub/marker; \
             echo \"== tmp ==\"; echo x > /escape/tmp/file && echo ok");
    let out = c.run();
    out.ok();
    // The mounts are visible through the symlinks inside the container: they were made at the
    // symlink's target resolved with the rootfs as `/`.
    assert_eq!(section(&out.stdout, "abs"), "bound");
    assert_eq!(section(&out.stdout, "rel"), "bound");
    assert_eq!(section(&out.stdout, "tmp"), "ok");
    assert_host_dir_untouched(&victim);
    assert!(c.rootfs.join(v).join("sub").is_dir(), "the destination was created inside the rootfs");
    c.assert_no_leaks();
}

/// Destinations with `..` components are cleaned lexically inside the rootfs: `/mnt/../../../../<victim>/x`
/// is `<rootfs>/<victim>/x`.
#[test]
fn path_escape_dotdot_destination() {
    let mut c = Container::new("path_escape_dotdot");
    let victim = c.host_path("victim");
    std::fs::create_dir(&victim).unwrap();
    let src = c.host_path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("marker"), "dotdot\n").unwrap();
    let v = victim.to_str().unwrap().trim_start_matches('/');
    c.spec.bind(&src, &format!("/mnt/../../../../{v}/dd"), true).sh(&format!("cat /{v}/dd/marker"));
    let out = c.run();
    out.ok();
    assert_eq!(out.stdout, "dotdot\n");
    assert_host_dir_untouched(&victim);
    c.assert_no_leaks();
}

/// A symlink in the middle of the destination that points at a host path which exists on the host but not
/// in the rootfs: the runtime must not mount over the host's directory.
#[test]
fn path_escape_absolute_symlink_to_host_dir() {
    let mut c = Container::new("path_escape_abs");
    let victim = c.host_path("victim");
    std::fs::create_dir_all(victim.join("inner")).unwrap();
    let v = victim.to_str().unwrap().trim_start_matches('/');
    symlink(format!("/{v}/inner"), c.rootfs.join("link")).unwrap();
    c.spec.add_mount("/link", "tmpfs", "tmpfs", &["size=1m"]).sh("echo x > /link/f && echo ok");
    let out = c.run();
    out.ok();
    assert_eq!(out.stdout, "ok\n");
    let inner: Vec<_> = std::fs::read_dir(victim.join("inner")).unwrap().flatten().collect();
    assert!(inner.is_empty(), "host dir must stay empty");
    assert!(roci_integration::container::mounts_below(&victim).is_empty());
    c.assert_no_leaks();
}
