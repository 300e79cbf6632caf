//! Root filesystem and mounts: read-only root, bind, tmpfs options, special filesystems, propagation,
//! masked and read-only paths, sysctls.

use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use roci_integration::{runtime, Container};

use crate::{mount_at, parse_mountinfo, run_sh, section};

#[test]
fn rootfs_readonly() {
    let out = run_sh(
        "rootfs_readonly",
        "echo \"== root ==\"; touch /newfile 2>&1; echo rc=$?; echo \"== tmp ==\"; touch /tmp/newfile && echo ok",
        |c| {
            c.spec.root_readonly(true).add_mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"]);
        },
    );
    let root = section(&out.stdout, "root");
    assert!(root.contains("Read-only file system"), "{out}");
    assert!(root.ends_with("rc=1"), "{out}");
    assert_eq!(section(&out.stdout, "tmp"), "ok", "a tmpfs on a read-only root stays writable");
}

#[test]
fn rootfs_readonly_flag_in_mountinfo() {
    let out = run_sh("rootfs_ro_flag", "cat /proc/self/mountinfo", |c| {
        c.spec.root_readonly(true);
    });
    let e = parse_mountinfo(&out.stdout);
    assert!(mount_at(&e, "/").options.contains(&"ro".to_string()), "{out}");
}

#[test]
fn mount_bind_ro_and_rw() {
    let mut c = Container::new("mount_bind");
    let src = c.host_path("share");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "from the host\n").unwrap();
    c.spec
        .bind(&src, "/rw", false)
        .bind(&src, "/ro", true)
        .sh("echo \"== rw ==\"; cat /rw/hello.txt; echo written > /rw/new.txt && echo write-ok; \
         echo \"== ro ==\"; cat /ro/hello.txt; touch /ro/x 2>&1; echo \"== info ==\"; cat /proc/self/mountinfo");
    let out = c.run();
    out.ok();
    assert_eq!(section(&out.stdout, "rw"), "from the host\nwrite-ok");
    let ro = section(&out.stdout, "ro");
    assert!(ro.starts_with("from the host"), "{out}");
    assert!(ro.contains("Read-only file system"), "{out}");
    assert_eq!(std::fs::read_to_string(src.join("new.txt")).unwrap(), "written\n", "rw bind writes reach the host");
    assert!(!src.join("x").exists());
    let e = parse_mountinfo(&section(&out.stdout, "info"));
    assert!(mount_at(&e, "/ro").options.contains(&"ro".to_string()));
    assert!(mount_at(&e, "/rw").options.contains(&"rw".to_string()));
    c.assert_no_leaks();
}

#[test]
fn mount_bind_file() {
    let mut c = Container::new("mount_bind_file");
    let src = c.host_path("file.txt");
    std::fs::write(&src, "single file\n").unwrap();
    c.spec.bind(&src, "/etc/bound.txt", true).sh("cat /etc/bound.txt");
    let out = c.run();
    out.ok();
    assert_eq!(out.stdout, "single file\n");
    c.assert_no_leaks();
}

#[test]
fn mount_tmpfs_size_and_flags() {
    let out = run_sh(
        "mount_tmpfs",
        "echo \"== df ==\"; df -k /scratch | tail -n 1; echo \"== exec ==\"; cp /bin/busybox /scratch/bb; /scratch/bb true 2>&1; echo rc=$?; \
         echo \"== info ==\"; cat /proc/self/mountinfo",
        |c| {
            c.spec.add_mount("/scratch", "tmpfs", "tmpfs", &["nosuid", "nodev", "noexec", "size=4m", "mode=1770"]);
        },
    );
    let df_line = section(&out.stdout, "df");
    let df: Vec<&str> = df_line.split_whitespace().collect();
    assert_eq!(df[1], "4096", "tmpfs size=4m gives 4096 1K-blocks: {out}");
    assert!(section(&out.stdout, "exec").contains("rc=126"), "noexec must stop exec: {out}");
    let e = parse_mountinfo(&section(&out.stdout, "info"));
    let m = mount_at(&e, "/scratch");
    assert_eq!(m.fstype, "tmpfs");
    for f in ["nosuid", "nodev", "noexec"] {
        assert!(m.options.contains(&f.to_string()), "{f} in {m:?}");
    }
    assert!(m.super_options.contains(&"size=4096k".to_string()), "{m:?}");
    assert!(m.super_options.contains(&"mode=1770".to_string()), "{m:?}");
}

#[test]
fn mount_special_filesystems() {
    let out = run_sh("mount_special", "cat /proc/self/mountinfo", |_| {});
    let e = parse_mountinfo(&out.stdout);
    assert_eq!(mount_at(&e, "/proc").fstype, "proc");
    assert_eq!(mount_at(&e, "/dev").fstype, "tmpfs");
    let pts = mount_at(&e, "/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    assert!(pts.super_options.contains(&"ptmxmode=666".to_string()), "{pts:?}");
    let shm = mount_at(&e, "/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    assert!(shm.options.contains(&"noexec".to_string()));
    assert_eq!(mount_at(&e, "/dev/mqueue").fstype, "mqueue");
    let sys = e.iter().find(|m| m.mount_point == "/sys").expect("/sys");
    assert_eq!(sys.fstype, "sysfs");
    assert!(sys.options.contains(&"ro".to_string()), "sysfs mounted ro: {sys:?}");
}

#[test]
fn mount_proc_is_the_containers() {
    // A new proc instance: it shows the container's pid namespace, not the host's processes.
    let out = run_sh("mount_proc", "ls -d /proc/[0-9]* | wc -l", |_| {});
    let n: usize = out.stdout.trim().parse().unwrap();
    assert!(n <= 3, "the container's /proc lists its own few processes, got {n}");
}

#[test]
fn sysfs_is_read_only() {
    let out = run_sh("sysfs_ro", "touch /sys/kernel/x 2>&1; echo rc=$?", |_| {});
    assert!(out.stdout.contains("Read-only file system"), "{out}");
}

/// Host view of a mount's propagation: `shared:N` / `master:N` from the optional fields.
fn host_optional(mount_point: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    parse_mountinfo(&info)
        .into_iter()
        .rev()
        .find(|e| e.mount_point == mount_point.to_str().unwrap())
        .map(|e| e.optional)
        .unwrap_or_default()
}

/// Make the bundle's rootfs a shared mount on the host, start a container that waits for a mount at /mnt to
/// appear, then mount a tmpfs on the host at rootfs/mnt. Returns (container's "/" optional fields, seen).
fn propagation_case(name: &str, propagation: Option<&str>) -> (String, bool, String) {
    let mut c = Container::new(name);
    let rootfs = c.rootfs.clone();
    mount(Some(&rootfs), &rootfs, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind rootfs");
    mount(None::<&str>, &rootfs, None::<&str>, MsFlags::MS_SHARED, None::<&str>).expect("make rootfs shared");
    let peer = host_optional(&rootfs).into_iter().find(|o| o.starts_with("shared:")).expect("shared peer group");
    if let Some(p) = propagation {
        c.spec.rootfs_propagation(p);
    }
    let marker = c.host_path("ready");
    let out_dir = c.host.clone();
    c.spec.bind(&out_dir, "/out", false).sh(
        "grep -E '^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / ' /proc/self/mountinfo > /out/root.txt; touch /out/ready; \
         i=0; while [ $i -lt 40 ]; do if grep -q ' /mnt ' /proc/self/mountinfo; then echo seen; exit 0; fi; \
         sleep 0.05; i=$((i+1)); done; echo not-seen",
    );
    let created = c.create();
    created.ok();
    c.start().ok();
    roci_integration::wait_until("the container to be ready", Duration::from_secs(10), || marker.exists());
    mount(Some("tmpfs"), &rootfs.join("mnt"), Some("tmpfs"), MsFlags::empty(), None::<&str>).expect("host tmpfs");
    c.wait_status("stopped", Duration::from_secs(10));
    let out = created.stdout_now();
    let root = std::fs::read_to_string(out_dir.join("root.txt")).unwrap();
    let seen = out.contains("seen") && !out.contains("not-seen");
    c.delete().ok();
    umount2(&rootfs.join("mnt"), MntFlags::MNT_DETACH).expect("umount host tmpfs");
    umount2(&rootfs, MntFlags::MNT_DETACH).expect("umount rootfs bind");
    c.assert_no_leaks();
    // The host's peer group `shared:N` is what a slave copy names as `master:N`.
    (root, seen, peer.replace("shared:", "master:"))
}

#[test]
fn rootfs_propagation_default_is_slave() {
    // Default (runc): the container's mounts are rslave of the host's: host mounts propagate in, nothing
    // propagates out.
    let (root, seen, master) = propagation_case("prop_default", None);
    assert!(root.contains(&format!(" {master} ")), "root mount is a slave of the host's rootfs mount ({master}): {root}");
    assert!(seen, "a host mount below the rootfs propagates into the container");
}

#[test]
fn rootfs_propagation_rslave() {
    let (root, seen, master) = propagation_case("prop_rslave", Some("rslave"));
    assert!(root.contains(&format!(" {master} ")), "{master}: {root}");
    assert!(seen);
}

#[test]
fn rootfs_propagation_private() {
    let (root, seen, _) = propagation_case("prop_private", Some("rprivate"));
    assert!(!root.contains("master:") && !root.contains("shared:"), "{root}");
    assert!(!seen, "private: host mounts do not propagate into the container");
}

/// runtime-tools' linux_rootfs_propagation (unbindable): an unbindable `/` must not stop the rootfs from
/// being bound on itself (it is made unbindable once entered), and no host mount propagates in.
/// Documented difference: runc 1.1 makes `/` unbindable first, and its bind of the rootfs then fails
/// (EINVAL; crun and roci pass).
#[test]
fn rootfs_propagation_unbindable() {
    if runtime().is_runc() {
        let mut c = Container::new("prop_unbindable");
        c.spec.rootfs_propagation("runbindable").args(&["true"]);
        c.create().fails().says("invalid argument");
        c.assert_no_leaks();
        return;
    }
    let (root, seen, _) = propagation_case("prop_unbindable", Some("runbindable"));
    assert!(root.contains(" unbindable "), "the container's / is unbindable: {root}");
    assert!(!root.contains("master:") && !root.contains("shared:"), "{root}");
    assert!(!seen, "unbindable: host mounts do not propagate into the container");
}

#[test]
fn masked_paths_read_empty() {
    // Files are masked with /dev/null (reads are empty, writes vanish), directories with an empty
    // read-only tmpfs. Only procfs files this kernel has are meaningful (/proc/kcore and /proc/sched_debug
    // are absent here).
    let proc_files: Vec<&str> = ["/proc/timer_list", "/proc/keys", "/proc/sched_debug"]
        .into_iter()
        .filter(|f| std::path::Path::new(f).exists())
        .collect();
    assert!(!proc_files.is_empty());
    let mut c = Container::new("masked");
    let mut masked = proc_files.clone();
    masked.extend(["/sys/firmware", "/etc/secret", "/etc/secretdir"]);
    let mut script = String::new();
    for f in proc_files.iter().chain(&["/etc/secret"]) {
        script.push_str(&format!("echo \"== {f} ==\"; cat {f} | wc -c; "));
    }
    script.push_str(
        "echo \"== ls ==\"; ls -A /sys/firmware /etc/secretdir | grep -vc ':$'; \
         echo \"== write ==\"; echo overwritten > /etc/secret && echo wrote; touch /etc/secretdir/x 2>&1; true",
    );
    c.spec.masked_paths(&masked).sh(&script);
    std::fs::write(c.rootfs.join("etc/secret"), "top secret\n").unwrap();
    std::fs::create_dir(c.rootfs.join("etc/secretdir")).unwrap();
    std::fs::write(c.rootfs.join("etc/secretdir/inner"), "hidden\n").unwrap();
    let out = c.run();
    out.ok();
    for f in proc_files.iter().chain(&["/etc/secret"]) {
        assert_eq!(section(&out.stdout, f), "0", "masked {f} must read empty: {out}");
    }
    // `ls -A a b` prints "a:" and "b:" headers and a blank line; no entries beyond those.
    assert_eq!(section(&out.stdout, "ls"), "1", "masked dirs must be empty: {out}");
    let w = section(&out.stdout, "write");
    assert!(w.contains("Read-only file system"), "a masked dir is read-only: {out}");
    assert_eq!(std::fs::read_to_string(c.rootfs.join("etc/secret")).unwrap(), "top secret\n", "writes to a masked file vanish");
    assert!(!c.rootfs.join("etc/secretdir/x").exists());
    c.assert_no_leaks();
}

#[test]
fn readonly_paths_not_writable() {
    // The container's new network namespace starts with the host's ip_forward (0 or 1): write the other
    // value, whatever it is, so a write that got through would show.
    let out = run_sh(
        "readonly_paths",
        "f=/proc/sys/net/ipv4/ip_forward; v=$(cat $f); echo $v; sh -c \"echo $((1 - v)) > $f\" 2>&1; echo rc=$?; cat $f; \
         echo \"== other ==\"; sh -c 'echo x > /etc/ro/f' 2>&1; echo rc=$?; echo \"== ok ==\"; echo y > /etc/rw && echo wrote",
        |c| {
            std::fs::create_dir(c.rootfs.join("etc/ro")).unwrap();
            c.spec.readonly_paths(&["/proc/sys", "/etc/ro"]);
        },
    );
    let lines = out.lines();
    assert!(lines[0] == "0" || lines[0] == "1", "{out}");
    assert!(lines[1].contains("Read-only file system"), "{out}");
    assert_eq!([lines[2].as_str(), lines[3].as_str()], ["rc=1", lines[0].as_str()], "unchanged: {out}");
    let other = section(&out.stdout, "other");
    assert!(other.contains("Read-only file system") && other.ends_with("rc=1"), "{out}");
    assert_eq!(section(&out.stdout, "ok"), "wrote", "paths not listed stay writable");
}

#[test]
fn sysctl_applied_in_namespaces() {
    // Values other than the host's (its ip_forward may be 0 or 1), so the container's own show.
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    let shmmax = if host_shmmax.trim() == "65536" { "65537" } else { "65536" };
    let out = run_sh("sysctl", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax /proc/sys/kernel/msgmax", |c| {
        c.spec.sysctl("net.ipv4.ip_forward", fwd).sysctl("kernel.shmmax", shmmax).sysctl("kernel.msgmax", "4096");
    });
    assert_eq!(out.lines(), [fwd, shmmax, "4096"]);
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), host_fwd, "host untouched");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(), host_shmmax, "host untouched");
}

#[test]
fn sysctl_of_host_namespace_rejected() {
    // net.* without a new network namespace would change the host: refused.
    let mut c = Container::new("sysctl_hostns");
    let before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let other = if before.trim() == "1" { "0" } else { "1" };
    c.spec.remove_namespace("network").sysctl("net.ipv4.ip_forward", other).args(&["true"]);
    c.run().fails().says("net.ipv4.ip_forward");
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), before);
    c.assert_no_leaks();
}

/// A host directory `tree` holding a file and a tmpfs submount `tree/sub` (mounted with `flags`) that holds
/// an executable copy of busybox; the bind source of the recursive-attribute tests.
fn tree_with_submount(c: &Container, flags: MsFlags) -> std::path::PathBuf {
    let tree = c.host_path("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("top.txt"), "top\n").unwrap();
    let sub = tree.join("sub");
    mount(Some("tmpfs"), &sub, Some("tmpfs"), flags - MsFlags::MS_RDONLY, Some("mode=755")).expect("host tmpfs submount");
    std::fs::copy(c.rootfs.join("bin/busybox"), sub.join("busybox")).unwrap();
    if flags.contains(MsFlags::MS_RDONLY) {
        // Read-only as a mount (a bind remount), not as a filesystem.
        mount(None::<&str>, &sub, None::<&str>, flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT, None::<&str>)
            .expect("host submount read-only");
    }
    tree
}

/// Inside the container: write to /t and /t/sub, run a program from /t/sub, then /t's and /t/sub's mount
/// options.
const TREE_PROBE: &str =
    "echo \"== top ==\"; touch /t/new 2>&1; echo rc=$?; echo \"== sub ==\"; touch /t/sub/new 2>&1; echo rc=$?; \
     echo \"== exec ==\"; /t/sub/busybox true 2>&1; echo rc=$?; \
     echo \"== info ==\"; cat /proc/self/mountinfo";

#[test]
fn mount_recursive_attributes_reach_submounts() {
    // rro and its kin set with mount_setattr(AT_RECURSIVE): the submount below a recursive bind gets them too
    // (they used to be ignored: a bind asked to be recursively read-only was writable below its top).
    let mut c = Container::new("mount_rro");
    let tree = tree_with_submount(&c, MsFlags::empty());
    c.spec
        .add_mount(
            "/t",
            "bind",
            &tree.to_string_lossy(),
            &["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime", "rnosymfollow"],
        )
        .sh(TREE_PROBE);
    let out = c.run();
    umount2(&tree.join("sub"), MntFlags::MNT_DETACH).unwrap();
    out.ok();
    for part in ["top", "sub"] {
        let s = section(&out.stdout, part);
        assert!(s.contains("Read-only file system") && s.ends_with("rc=1"), "{part}: {out}");
    }
    assert!(section(&out.stdout, "exec").ends_with("rc=126"), "rnoexec reaches the submount: {out}");
    let e = parse_mountinfo(&section(&out.stdout, "info"));
    for at in ["/t", "/t/sub"] {
        let m = mount_at(&e, at);
        for o in ["ro", "nosuid", "nodev", "noexec", "noatime", "nosymfollow"] {
            assert!(m.options.contains(&o.to_string()), "{o} on {at}: {m:?}");
        }
    }
    assert!(!tree.join("new").exists() && !tree.join("sub/new").exists());
    c.assert_no_leaks();
}

#[test]
fn mount_plain_attributes_on_a_recursive_bind_stay_on_its_top() {
    // `ro`, `nosuid`, `noexec` without the r: the top of the bind only, as runc does (a remount of one mount).
    let mut c = Container::new("mount_ro_top");
    let tree = tree_with_submount(&c, MsFlags::empty());
    c.spec.add_mount("/t", "bind", &tree.to_string_lossy(), &["rbind", "ro", "nosuid", "noexec"]).sh(TREE_PROBE);
    let out = c.run();
    let wrote = tree.join("sub/new").exists();
    umount2(&tree.join("sub"), MntFlags::MNT_DETACH).unwrap();
    out.ok();
    let top = section(&out.stdout, "top");
    assert!(top.contains("Read-only file system") && top.ends_with("rc=1"), "{out}");
    assert_eq!(section(&out.stdout, "sub"), "rc=0", "the submount stays writable: {out}");
    assert_eq!(section(&out.stdout, "exec"), "rc=0", "and executable: {out}");
    let e = parse_mountinfo(&section(&out.stdout, "info"));
    let (t, sub) = (mount_at(&e, "/t"), mount_at(&e, "/t/sub"));
    for o in ["ro", "nosuid", "noexec"] {
        assert!(t.options.contains(&o.to_string()), "{o} on /t: {t:?}");
        assert!(!sub.options.contains(&o.to_string()), "{o} not on /t/sub: {sub:?}");
    }
    assert!(wrote, "the write reached the host's submount");
    c.assert_no_leaks();
}

#[test]
fn mount_recursive_attributes_clear_and_choose_atime() {
    // The clearing words lift what the host's submount has (read-only, nosuid, nodev, noexec) in the
    // container's copy only; an atime word chooses the mode for the whole tree. (Opposite words in one
    // list: the last wins in roci, as with the plain options, see the unit tests; runc 1.1 lets a setting
    // word win over a clearing one and combines atime words into a mode the kernel refuses.)
    let mut c = Container::new("mount_rclear");
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
    let tree = tree_with_submount(&c, flags);
    c.spec
        .add_mount("/t", "bind", &tree.to_string_lossy(), &["rbind", "rrw", "rsuid", "rdev", "rexec", "rstrictatime"])
        .sh(TREE_PROBE);
    let out = c.run();
    let host_sub = host_optional_options(&tree.join("sub"));
    umount2(&tree.join("sub"), MntFlags::MNT_DETACH).unwrap();
    out.ok();
    assert_eq!(section(&out.stdout, "sub"), "rc=0", "rrw lifts the host's read-only: {out}");
    assert_eq!(section(&out.stdout, "exec"), "rc=0", "rexec lifts the host's noexec: {out}");
    let e = parse_mountinfo(&section(&out.stdout, "info"));
    for at in ["/t", "/t/sub"] {
        let m = mount_at(&e, at);
        for o in ["ro", "nosuid", "nodev", "noexec", "noatime", "relatime"] {
            assert!(!m.options.contains(&o.to_string()), "{o} on {at} (rstrictatime): {m:?}");
        }
    }
    for o in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(host_sub.contains(&o.to_string()), "the host's mount keeps {o}: {host_sub:?}");
    }
    c.assert_no_leaks();
}

#[test]
fn mount_recursive_read_only_tmpfs() {
    // On a filesystem mount too (the words are not filesystem data: tmpfs would refuse "rro").
    let out = run_sh("mount_rro_tmpfs", "touch /scratch/x 2>&1; echo rc=$?; grep ' /scratch ' /proc/self/mountinfo", |c| {
        c.spec.add_mount("/scratch", "tmpfs", "tmpfs", &["rro", "rnodev", "size=1m"]);
    });
    if runtime().is_runc() {
        // Documented difference: runc 1.1 applies recursive attributes to bind mounts only and silently
        // leaves a tmpfs asked to be `rro` writable; roci applies them to every mount.
        assert_eq!(out.lines()[0], "rc=0", "{out}");
        return;
    }
    let lines = out.lines();
    assert!(lines[0].contains("Read-only file system") && lines[1] == "rc=1", "{out}");
    let e = parse_mountinfo(&out.stdout);
    let m = mount_at(&e, "/scratch");
    assert!(m.options.contains(&"ro".to_string()) && m.options.contains(&"nodev".to_string()), "{m:?}");
    assert!(m.super_options.contains(&"size=1024k".to_string()), "{m:?}");
}

/// Host view of a mount's per-mount options.
fn host_optional_options(mount_point: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    parse_mountinfo(&info)
        .into_iter()
        .rev()
        .find(|e| e.mount_point == mount_point.to_str().unwrap())
        .map(|e| e.options)
        .unwrap_or_default()
}
