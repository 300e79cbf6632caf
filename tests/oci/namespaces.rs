//! Namespaces: new ones, joined ones, and the ones not asked for.

use std::process::Command;
use std::time::Duration;

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

/// A process in a mount namespace of the test's own (a private copy of the host's), through which the
/// runtime is run: a container without a mount namespace of its own is set up in the runtime's, and this
/// keeps whatever a runtime does there (runc leaves its mounts behind) off the host. Killed on drop.
struct MountNsHolder(std::process::Child);

impl MountNsHolder {
    fn new() -> MountNsHolder {
        let child =
            Command::new("unshare").args(["--mount", "--propagation", "private", "sleep", "600"]).spawn().expect("spawn unshare");
        let h = MountNsHolder(child);
        roci_integration::wait_until("the holder's mount namespace", Duration::from_secs(10), || {
            std::fs::read_link(format!("/proc/{}/ns/mnt", h.pid()))
                .is_ok_and(|l| l != std::fs::read_link("/proc/self/ns/mnt").unwrap())
                && std::fs::read_to_string(format!("/proc/{}/comm", h.pid())).is_ok_and(|c| c.trim() == "sleep")
        });
        h
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn ns(&self) -> String {
        ns_id(&format!("/proc/{}/ns/mnt", self.pid()))
    }

    /// Mount points in the holder's namespace at or below `dir`.
    fn mounts_below(&self, dir: &std::path::Path) -> Vec<String> {
        let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(roci_integration::unescape_mountinfo)
            .filter(|m| std::path::Path::new(m).starts_with(dir))
            .collect()
    }

    /// `nsenter --mount=HOLDER RUNTIME --root .. ARGS`.
    fn invoke(&self, c: &Container, args: &[&str]) -> roci_integration::Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.pid())).arg("--").arg(&c.rt.path);
        cmd.arg("--root").arg(&c.state_root).arg("--log").arg(&c.log).arg("--log-format").arg("json");
        cmd.args(args);
        c.exec(cmd, roci_integration::exec::default_timeout())
    }
}

impl Drop for MountNsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A create of a container without a mount namespace binds its rootfs in the runtime's mount
/// namespace; SIGKILLed after that (here while a createRuntime hook runs), it leaves the bind, and
/// `delete --force` must detach it as it removes the rest of the half-made container.
#[test]
fn killed_create_without_mount_namespace_leaves_no_rootfs_bind() {
    let holder = MountNsHolder::new();
    let mut c = Container::new("killed_shared_rootfs");
    c.spec.remove_namespace("mount").remove("/linux/maskedPaths").remove("/linux/readonlyPaths");
    let pid_file = c.host_path("hook.pid");
    c.spec.hook(
        "createRuntime",
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 100", pid_file.display())]}),
    );
    c.write_config();
    let mut create = Command::new("nsenter");
    create.arg(format!("--mount=/proc/{}/ns/mnt", holder.pid())).arg("--").arg(&c.rt.path);
    create.arg("--root").arg(&c.state_root).args(["create", "--bundle"]).arg(&c.bundle).arg(&c.id);
    create.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut runtime = create.spawn().expect("spawn the runtime");
    let mut hook = None;
    roci_integration::wait_until("the createRuntime hook", Duration::from_secs(20), || {
        hook = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok());
        hook.is_some()
    });
    assert!(!holder.mounts_below(&c.rootfs).is_empty(), "the rootfs is bound in the runtime's namespace during create");
    // nsenter executed the runtime: the child's pid is the runtime's.
    runtime.kill().expect("SIGKILL the runtime");
    runtime.wait().ok();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(hook.unwrap()), nix::sys::signal::Signal::SIGKILL).ok();
    holder.invoke(&c, &["delete", "--force", &c.id]).ok();
    let left = holder.mounts_below(&c.rootfs);
    // runc 1.1 records a container only once it is created: after a killed create its delete finds
    // nothing, and the mounts and cgroups stay (the guard removes the cgroups; the mounts go with the
    // holder's namespace). See killed.rs.
    if !c.rt.is_runc() {
        assert!(left.is_empty(), "delete --force after a killed create detaches the rootfs bind: {left:?}");
        c.assert_no_leaks();
    }
}

/// runtime-tools' ns_itype: every namespace type not in `linux.namespaces` is the runtime's own, seen from
/// outside through `/proc/PID/ns/*` of the container's init (the `*_for_children` links too), the mount
/// namespace included. runc and roci then set the rootfs up in the runtime's mount namespace and enter it
/// with a chroot: the namespace's `/` stays where it was. Masked and read-only paths would cover paths in
/// that shared namespace: both refuse them. Documented difference: runc 1.1 leaves the rootfs mounts in the
/// runtime's namespace after delete; roci's delete detaches them.
#[test]
fn ns_itype_types_not_listed_are_the_runtimes() {
    let holder = MountNsHolder::new();
    let mut c = Container::new("ns_itype");
    for n in ["pid", "network", "ipc", "uts", "cgroup", "user", "time", "mount"] {
        c.spec.remove_namespace(n);
    }
    c.spec.remove("/hostname").remove("/linux/maskedPaths").remove("/linux/readonlyPaths");
    c.spec.args(&["sh", "-c", "ls / > /only-here/ls.txt"]);
    std::fs::create_dir(c.rootfs.join("only-here")).unwrap();
    c.write_config();
    let bundle = c.bundle.to_str().unwrap().to_owned();
    holder.invoke(&c, &["create", "--bundle", &bundle, &c.id]).ok();
    let pid = c.state()["pid"].as_i64().expect("pid") as i32;
    c.record_pid(pid);

    let mut types: Vec<String> =
        std::fs::read_dir("/proc/self/ns").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    types.sort();
    assert!(types.len() >= 8, "{types:?}");
    for n in &types {
        let inside = ns_id(&format!("/proc/{pid}/ns/{n}"));
        if n == "mnt" {
            assert_eq!(inside, holder.ns(), "not listed, so the runtime's mount namespace");
        } else {
            assert_eq!(inside, ns_id(&format!("/proc/self/ns/{n}")), "{n}: not listed, so the runtime's");
        }
    }
    // The rootfs mounts are in the runtime's namespace (and not in the test's), and its `/` is still the
    // host's root: no pivot_root, no move onto `/`.
    let mounted = holder.mounts_below(&c.rootfs);
    let proc_dir = c.rootfs.join("proc");
    assert!(mounted.iter().any(|m| std::path::Path::new(m) == proc_dir), "{mounted:?}");
    assert!(c.mounts_below().is_empty(), "nothing in the test's own namespace: {:?}", c.mounts_below());
    assert_eq!(std::fs::read_link(format!("/proc/{}/root", holder.pid())).unwrap(), std::path::Path::new("/"));
    assert!(holder.mounts_below(std::path::Path::new("/")).iter().any(|m| m == "/"));

    holder.invoke(&c, &["start", &c.id]).ok();
    c.wait_status("stopped", Duration::from_secs(10));
    let ls = std::fs::read_to_string(c.rootfs.join("only-here/ls.txt")).expect("the program ran chrooted in the rootfs");
    assert!(ls.lines().any(|l| l == "only-here"), "{ls}");
    holder.invoke(&c, &["delete", &c.id]).ok();
    let left = holder.mounts_below(&c.rootfs);
    if c.rt.is_runc() {
        assert!(!left.is_empty(), "runc 1.1 leaves the rootfs mounts behind");
    } else {
        assert!(left.is_empty(), "delete detaches the rootfs mounts: {left:?}");
    }
    assert_eq!(std::fs::read_link(format!("/proc/{}/root", holder.pid())).unwrap(), std::path::Path::new("/"));
    c.assert_no_leaks();

    // A create that fails after the rootfs was set up (a failing createRuntime hook) takes its mounts
    // with it (runc leaves them).
    let mut c = Container::new("ns_itype_hook_fails");
    c.spec.remove_namespace("mount").remove("/linux/maskedPaths").remove("/linux/readonlyPaths");
    c.spec.hook("createRuntime", serde_json::json!({"path": "/bin/false"}));
    c.write_config();
    let bundle = c.bundle.to_str().unwrap().to_owned();
    holder.invoke(&c, &["create", "--bundle", &bundle, &c.id]).fails();
    let left = holder.mounts_below(&c.rootfs);
    if !c.rt.is_runc() {
        assert!(left.is_empty(), "a failed create detaches the rootfs mounts: {left:?}");
    }
    c.delete_force().ok();
    c.assert_no_leaks();

    // Masked paths would cover files of the shared namespace: refused, nothing mounted.
    let holder = MountNsHolder::new();
    let mut c = Container::new("ns_itype_masked");
    c.spec.remove_namespace("mount").masked_paths(&["/proc/kcore"]);
    c.write_config();
    let bundle = c.bundle.to_str().unwrap().to_owned();
    let out = holder.invoke(&c, &["create", "--bundle", &bundle, &c.id]);
    out.fails();
    if !c.rt.is_runc() {
        out.says("linux.maskedPaths");
    }
    assert!(holder.mounts_below(&c.rootfs).is_empty(), "{:?}", holder.mounts_below(&c.rootfs));
    c.assert_no_leaks();
}
