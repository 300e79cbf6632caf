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

/// `linux.maskedPaths` entries that are symlinks: one that loops (`/masked-symlink -> ../masked-symlink`,
/// as the runtime-tools suite makes it) fails the create, as with runc; neither runtime mounts through it.
#[test]
fn masked_path_symlink_that_loops_fails_create() {
    let mut c = Container::new("masked_loop");
    symlink("../masked-symlink", c.rootfs.join("masked-symlink")).unwrap();
    c.spec.masked_paths(&["/masked-symlink"]).args(&["true"]);
    // runc: "can't mask path /masked-symlink: mount /dev/null:/masked-symlink, ...: too many levels of
    // symbolic links"; roci names the field.
    c.run().fails().says("/masked-symlink").says("too many levels of symbolic links");
    c.assert_no_leaks();
}

/// A masked path that is a dangling symlink, or one whose `..` climbs towards a host file, is left as it
/// is (runc's mount fails with ENOENT, which it ignores): the create goes on, nothing is mounted on the
/// host, the link stays a link.
#[test]
fn masked_path_dangling_or_escaping_symlink_is_left_alone() {
    let mut c = Container::new("masked_dangling");
    let victim = c.host_path("victim");
    std::fs::create_dir(&victim).unwrap();
    let v = victim.to_str().unwrap().trim_start_matches('/');
    symlink("/nonexistent", c.rootfs.join("dangling")).unwrap();
    symlink(format!("../../../../../../../{v}/secret"), c.rootfs.join("escaping")).unwrap();
    c.spec.masked_paths(&["/dangling", "/escaping"]).readonly_paths(&["/dangling"]).sh("readlink /dangling; readlink /escaping");
    let out = c.run();
    out.ok();
    assert_eq!(out.lines(), ["/nonexistent", format!("../../../../../../../{v}/secret").as_str()]);
    assert_host_dir_untouched(&victim);
    c.assert_no_leaks();
}

/// Relative paths in `linux.readonlyPaths` and `linux.maskedPaths` are taken relative to the container's
/// root, as runc takes them (they used to be refused).
#[test]
fn readonly_and_masked_relative_paths_are_rootfs_relative() {
    let mut c = Container::new("paths_relative");
    std::fs::create_dir(c.rootfs.join("etc/ro")).unwrap();
    std::fs::write(c.rootfs.join("etc/secret"), "top secret\n").unwrap();
    c.spec
        .readonly_paths(&["etc/ro"])
        .masked_paths(&["etc/secret"])
        .sh("echo \"== ro ==\"; touch /etc/ro/x 2>&1; echo rc=$?; echo \"== masked ==\"; cat /etc/secret | wc -c");
    let out = c.run();
    out.ok();
    let ro = section(&out.stdout, "ro");
    assert!(ro.contains("Read-only file system") && ro.ends_with("rc=1"), "{out}");
    assert_eq!(section(&out.stdout, "masked"), "0", "{out}");
    c.assert_no_leaks();
}

/// A rootfs whose `/proc` or `/sys` is a symlink (even one inside the rootfs) or a file: the create fails
/// with runc's reason, that the filesystem must be mounted on ordinary directory, and nothing is
/// mounted through the link.
#[test]
fn proc_or_sys_not_a_directory_fails_with_runcs_reason() {
    for (dir, kind) in [("proc", "symlink"), ("sys", "symlink"), ("proc", "file"), ("sys", "file")] {
        let mut c = Container::new(&format!("special_{dir}_{kind}"));
        std::fs::remove_dir(c.rootfs.join(dir)).unwrap();
        std::fs::create_dir(c.rootfs.join("elsewhere")).unwrap();
        if kind == "symlink" {
            symlink("elsewhere", c.rootfs.join(dir)).unwrap();
        } else {
            std::fs::write(c.rootfs.join(dir), "").unwrap();
        }
        c.spec.args(&["true"]);
        // runc 1.1: `error mounting "proc" to rootfs at "/proc": filesystem "proc" must be mounted on
        // ordinary directory`.
        c.create().fails().says(&format!("/{dir}")).says("must be mounted on ordinary directory");
        assert_eq!(std::fs::read_dir(c.rootfs.join("elsewhere")).unwrap().count(), 0, "{dir} {kind}: nothing made there");
        c.assert_no_leaks();
    }
}
