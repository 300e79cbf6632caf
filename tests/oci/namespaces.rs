//! Namespaces: new ones, joined ones, and the ones not asked for.

use roci_integration::{ns_id, runtime, Container};

use crate::run_sh;

const PRINT_NS: &str = "for n in net uts ipc pid mnt cgroup user time; do echo \"$n $(readlink /proc/self/ns/$n)\"; done";

fn container_ns(out: &str) -> std::collections::HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

#[test]
fn ns_new_namespaces_differ_from_host() {
    let out = run_sh("ns_new", PRINT_NS, |c| {
        c.spec.namespace("cgroup", None);
    });
    let ns = container_ns(&out.stdout);
    for n in ["net", "uts", "ipc", "pid", "mnt", "cgroup"] {
        let host = ns_id(&format!("/proc/self/ns/{n}"));
        let inside = ns.get(n).unwrap_or_else(|| panic!("no {n} in {out}"));
        assert_ne!(inside, &host, "{n} namespace must be new");
        assert!(inside.starts_with(&format!("{n}:[")), "{inside}");
    }
    // Not asked for: shared with the host.
    for n in ["user", "time"] {
        assert_eq!(ns[n], ns_id(&format!("/proc/self/ns/{n}")), "{n} namespace must be the host's");
    }
}

#[test]
fn ns_omitted_are_shared_with_host() {
    let out = run_sh("ns_omitted", PRINT_NS, |c| {
        // Without a UTS namespace there must be no hostname (runc: "unable to set hostname without a
        // private UTS namespace").
        c.spec.remove_namespace("network").remove_namespace("ipc").remove_namespace("uts").remove("/hostname");
    });
    let ns = container_ns(&out.stdout);
    for n in ["net", "ipc", "uts", "cgroup"] {
        assert_eq!(ns[n], ns_id(&format!("/proc/self/ns/{n}")), "{n} namespace not in config must be the host's");
    }
    for n in ["pid", "mnt"] {
        assert_ne!(ns[n], ns_id(&format!("/proc/self/ns/{n}")), "{n}");
    }
}

/// Container B joins A's network, pid and uts namespaces by path.
#[test]
fn ns_join_by_path() {
    let mut a = Container::new("ns_join_a");
    a.spec.args(&["sleep", "1234"]).hostname("ns-a");
    a.create().ok();
    a.start().ok();
    let apid = a.pid();

    let mut b = Container::new("ns_join_b");
    b.spec
        .namespace("network", Some(&format!("/proc/{apid}/ns/net")))
        .namespace("pid", Some(&format!("/proc/{apid}/ns/pid")))
        .namespace("uts", Some(&format!("/proc/{apid}/ns/uts")))
        // Joining a uts namespace: the hostname is A's; setting one would change A's too.
        .remove("/hostname")
        .sh("echo \"== ns ==\"; readlink /proc/self/ns/net; readlink /proc/self/ns/pid; echo \"== host ==\"; hostname; \
             echo \"== me ==\"; echo $$; echo \"== ps ==\"; ps -o pid,args");
    let out = b.run();
    out.ok();
    let ns: Vec<String> = crate::section(&out.stdout, "ns").lines().map(String::from).collect();
    assert_eq!(ns[0], ns_id(&format!("/proc/{apid}/ns/net")), "B must be in A's network namespace");
    assert_eq!(ns[1], ns_id(&format!("/proc/{apid}/ns/pid")), "B must be in A's pid namespace");
    assert_eq!(crate::section(&out.stdout, "host"), "ns-a");
    assert_ne!(crate::section(&out.stdout, "me"), "1", "B joined A's pid namespace: A's init is PID 1");
    let ps = crate::section(&out.stdout, "ps");
    assert!(
        ps.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "1234"]),
        "A's init is visible from B as PID 1:\n{ps}"
    );
    b.assert_no_leaks();

    a.delete_force().ok();
    a.assert_no_leaks();
}

#[test]
fn ns_time_namespace() {
    let rt = runtime();
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("ns_time_namespace: this kernel has no time namespaces (5.6+); nothing to test");
        return;
    }
    let mut c = Container::new("ns_time");
    c.spec
        .namespace("time", None)
        .set(
            "/linux/timeOffsets",
            serde_json::json!({"monotonic": {"secs": 86400, "nanosecs": 0}, "boottime": {"secs": 172800, "nanosecs": 0}}),
        )
        .sh("readlink /proc/self/ns/time; cut -d. -f1 /proc/uptime");
    let out = c.run();
    if rt.is_runc() {
        // Documented difference: runc 1.1 does not know the time namespace ("namespace {"time" ""} does not
        // exist"); roci supports it and `linux.timeOffsets` (runtime-spec 1.1).
        out.fails().says("time");
        c.assert_no_leaks();
        return;
    }
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_ne!(lines[0], ns_id("/proc/self/ns/time"), "time namespace must be new: {out}");
    let host_uptime: f64 = std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let inside: f64 = lines[1].parse().expect("uptime");
    // /proc/uptime follows CLOCK_BOOTTIME: shifted by two days.
    assert!(inside >= host_uptime + 172800.0 - 60.0, "boottime offset applied: inside {inside}, host {host_uptime}");
    c.assert_no_leaks();
}

/// runtime-tools' ns_itype: every namespace type not in `linux.namespaces` is the runtime's own, seen from
/// outside through `/proc/PID/ns/*` of the container's init (the `*_for_children` links too). Only the mount
/// namespace is kept: roci requires one (runc 1.1 sets the rootfs up in the runtime's mount namespace and
/// leaves its mounts on the host after delete).
#[test]
fn ns_itype_types_not_listed_are_the_runtimes() {
    let mut c = Container::new("ns_itype");
    for n in ["pid", "network", "ipc", "uts", "cgroup", "user", "time"] {
        c.spec.remove_namespace(n);
    }
    c.spec.remove("/hostname").args(&["sleep", "1000"]);
    c.create().ok();
    let pid = c.pid();
    let mut types: Vec<String> =
        std::fs::read_dir("/proc/self/ns").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    types.sort();
    assert!(types.len() >= 8, "{types:?}");
    for n in &types {
        let inside = ns_id(&format!("/proc/{pid}/ns/{n}"));
        if n == "mnt" {
            assert_ne!(inside, ns_id("/proc/self/ns/mnt"), "the mount namespace is the container's own");
        } else {
            assert_eq!(inside, ns_id(&format!("/proc/self/ns/{n}")), "{n}: not listed, so the runtime's");
        }
    }
    c.delete_force().ok();
    c.assert_no_leaks();
}
