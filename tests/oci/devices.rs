//! /dev: the default devices, the standard symlinks, and `linux.devices`.

use crate::{run_sh, section};

/// `stat -c '%n %F %t:%T %a'` prints major:minor in hex.
fn stat_line(out: &str, path: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.starts_with(&format!("{path} ")))
        .unwrap_or_else(|| panic!("no stat line for {path} in {out}"))
        .strip_prefix(&format!("{path} "))
        .unwrap()
        .rsplitn(3, ' ')
        .map(String::from)
        .collect()
}

#[test]
fn dev_default_devices() {
    let out = run_sh(
        "dev_default",
        "stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; \
         echo \"== rw ==\"; echo discard > /dev/null && head -c 4 /dev/zero | od -An -tx1 | tr -d ' '; \
         head -c 8 /dev/urandom | wc -c",
        |_| {},
    );
    for (dev, num) in [("null", "1:3"), ("zero", "1:5"), ("full", "1:7"), ("random", "1:8"), ("urandom", "1:9"), ("tty", "5:0")] {
        let fields = stat_line(&out.stdout, &format!("/dev/{dev}"));
        // rsplitn: [mode, maj:min, type]
        assert_eq!(fields[2], "character special file", "/dev/{dev}: {out}");
        assert_eq!(fields[1], num, "/dev/{dev} numbers: {out}");
        assert_eq!(fields[0], "666", "/dev/{dev} mode: {out}");
    }
    assert_eq!(section(&out.stdout, "rw"), "00000000\n8");
}

#[test]
fn dev_standard_symlinks() {
    let out = run_sh(
        "dev_symlinks",
        "for l in fd stdin stdout stderr ptmx; do echo \"$l $(readlink /dev/$l)\"; done; \
         echo \"== shm ==\"; test -d /dev/shm && echo dir; echo \"== pts ==\"; test -c /dev/pts/ptmx && echo ptmx",
        |_| {},
    );
    let links: Vec<&str> = out.stdout.lines().take(5).collect();
    assert_eq!(
        links,
        ["fd /proc/self/fd", "stdin /proc/self/fd/0", "stdout /proc/self/fd/1", "stderr /proc/self/fd/2", "ptmx pts/ptmx"],
        "{out}"
    );
    assert_eq!(section(&out.stdout, "shm"), "dir");
    assert_eq!(section(&out.stdout, "pts"), "ptmx");
}

#[test]
fn dev_no_host_devices() {
    // /dev is a fresh tmpfs: host devices that the config does not list are absent.
    let out = run_sh("dev_no_host", "ls /dev", |_| {});
    for absent in ["vda", "sda", "kmsg", "mem", "loop0"] {
        assert!(!out.lines().iter().any(|l| l == absent), "host device /dev/{absent} visible: {out}");
    }
}

#[test]
fn dev_custom_device() {
    let out = run_sh(
        "dev_custom",
        "stat -c '%n %F %t:%T %a' /dev/mydev; echo \"== use ==\"; echo hi > /dev/mydev && cat /dev/mydev | wc -c",
        |c| {
            c.spec.device("/dev/mydev", "c", 1, 3, 0o666);
        },
    );
    let f = stat_line(&out.stdout, "/dev/mydev");
    assert_eq!(f, ["666", "1:3", "character special file"], "{out}");
    assert_eq!(section(&out.stdout, "use"), "0", "it works like /dev/null");
}

/// The device cgroup: the default rule denies every device not allowed. /dev/kmsg (1:11) opened
/// write-only needs no capability (printk_devkmsg=ratelimit), so a node made inside opens exactly when the
/// device rules allow it: denied with the default rules, opened once an allow rule for c 1:11 is added.
#[test]
fn dev_unlisted_device_denied() {
    let script = "mknod /tmp/kmsg c 1 11 && echo made; (exec 3> /tmp/kmsg) 2>&1 && echo opened || echo denied";
    let caps = ["CAP_MKNOD"];
    let out = run_sh("dev_unlisted_denied", script, |c| {
        c.spec.capabilities(&caps, &caps, &caps, &[], &[]);
    });
    assert!(out.stdout.starts_with("made\n"), "{out}");
    assert!(out.stdout.ends_with("denied\n"), "the device cgroup must refuse an unlisted device: {out}");
    assert!(out.stdout.contains("Operation not permitted"), "{out}");

    let out = run_sh("dev_listed_allowed", script, |c| {
        c.spec.capabilities(&caps, &caps, &caps, &[], &[]).resources(
            "devices",
            serde_json::json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"}]),
        );
    });
    assert_eq!(out.lines(), ["made", "opened"], "an allowed device opens: {out}");
}
