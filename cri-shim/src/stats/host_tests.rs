//! The measurements against this host's kernel: a cgroup of the test's own (in every hierarchy,
//! through libcontainer's manager: the v1 ones on a v1/hybrid host, the one tree on cgroup v2, so
//! the same test covers both; the Makefile's test-v2guest runs it in the cgroup v2 guest), and a
//! pair of network namespaces of its own joined by veth pairs. They need root and skip
//! themselves, with a note, otherwise. Guards remove the cgroup, the namespaces (and with them
//! the veths) and kill the test's processes, also when a test fails.

use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libcontainer::cgroups::{self, CgroupPath, Manager, Version};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::*;
use crate::network::netns;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("note: skipped, needs root");
    false
}

/// The test's cgroup (removed with everything in it) and its process (killed).
struct CgroupGuard {
    manager: Box<dyn Manager>,
    child: Option<Child>,
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.manager.destroy() {
            eprintln!("remove the test cgroup {}: {e}", self.manager.path());
        }
    }
}

/// Poll `f` every 50 ms until it returns `Some`, for up to `secs`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const MIB: u64 = 1024 * 1024;

#[test]
fn cgroup_numbers_move_with_a_busy_process() {
    if !is_root() {
        return;
    }
    let layout = match cgroups::detect() {
        Ok(l) => l,
        Err(e) => return eprintln!("note: skipped, no cgroups: {e}"),
    };
    let path = format!("/roci-stats-test-{}-cgroup", std::process::id());
    let mut manager = layout.manager(&CgroupPath::new(&path).unwrap()).unwrap();
    manager.create().unwrap();
    let mut guard = CgroupGuard { manager, child: None };
    let limit = 512 * MIB;
    guard.manager.apply(&serde_json::from_value(serde_json::json!({ "memory": { "limit": limit } })).unwrap()).unwrap();

    // Waits on stdin until it is in the cgroup, then holds ~40 MB in a shell variable and spins.
    let mut child = Command::new("sh")
        .args(["-c", r#"read _; x=$(head -c 40000000 /dev/zero | tr '\0' a); while :; do :; done"#])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    guard.child = Some(child);
    guard.manager.add_process(pid).unwrap();
    stdin.write_all(b"go\n").unwrap();

    let sampler = Sampler::new();
    let first = cgroup_usage(&sampler, "ctr", &path).unwrap();
    assert_eq!(first.cpu.usage_nano_cores, None, "first sample: no rate");
    let busy = wait_for(30, "40 MB in the cgroup", || {
        let u = cgroup_usage(&sampler, "ctr", &path).unwrap();
        (u.memory.rss_bytes >= 35 * MIB).then_some(u)
    });
    std::thread::sleep(Duration::from_millis(500));
    let u = cgroup_usage(&sampler, "ctr", &path).unwrap();
    eprintln!("first {first:?}\nbusy {busy:?}\nlast {u:?}");

    assert!(u.cpu.usage_core_nano_seconds > first.cpu.usage_core_nano_seconds);
    assert!(u.cpu.timestamp > first.cpu.timestamp);
    // A spinning shell: well over 5% of a core, even on a loaded machine or in the TCG guest.
    let cores = u.cpu.usage_nano_cores.expect("a rate from the second sample on");
    assert!(cores > 50_000_000, "{cores} nano-cores");
    let m = u.memory;
    assert!(m.working_set_bytes >= 35 * MIB && m.working_set_bytes <= m.usage_bytes, "{m:?}");
    assert_eq!(m.available_bytes, limit - m.working_set_bytes);
    assert!(m.page_faults > 1000, "{m:?}");
    assert!(u.process_count >= 1, "{u:?}");
    // The metrics RPCs' extras: a spinning shell spends its time in user mode; the cache key
    // is there on both versions; failcnt on v1 only.
    let d = u.detail;
    assert!(d.cpu_user_nano_seconds > 0, "{d:?}");
    assert!(d.cache_bytes.is_some(), "{d:?}");
    // Swap: reported where the cgroup accounts it; nothing swaps here (no swap, or far from the limit).
    let memory_dir = guard
        .manager
        .mount_sources()
        .into_iter()
        .find(|s| s.version == Version::V2 || s.controllers.iter().any(|c| c == "memory"))
        .map(|s| s.host_dir)
        .unwrap();
    let accounted = memory_dir.join("memory.memsw.usage_in_bytes").exists() || memory_dir.join("memory.swap.current").exists();
    assert_eq!(u.swap.is_some(), accounted, "{memory_dir:?}: {u:?}");
    if let Some(swap) = u.swap {
        assert_eq!(swap.swap_usage_bytes, 0, "{swap:?}");
    }
    assert_eq!(d.failcnt.is_some(), memory_dir.join("memory.failcnt").exists(), "{memory_dir:?}: {d:?}");

    // The same cgroup as a container's and as its pod's: the pod counts its containers'
    // processes, and has a CPU sample of its own.
    let upper = tempfile::tempdir().unwrap();
    std::fs::write(upper.path().join("written"), vec![1u8; 8192]).unwrap();
    let c = container_usage(&sampler, "ctr", Some(&path), upper.path(), Path::new("/images")).unwrap();
    let cg = c.cgroup.unwrap();
    assert!(cg.cpu.usage_nano_cores.is_some());
    assert_eq!((c.writable_layer.inodes_used, c.writable_layer.mountpoint.as_path()), (2, Path::new("/images")));
    let stopped = container_usage(&sampler, "stopped", None, upper.path(), Path::new("/images")).unwrap();
    let pod = pod_usage(&sampler, "pod", &path, None, &[c.clone(), stopped]).unwrap();
    assert_eq!(pod.process.process_count, cg.process_count, "the stopped container adds nothing");
    assert_eq!(pod.cgroup.cpu.usage_nano_cores, None, "the pod's first sample");
    assert_eq!(pod.network, None);

    sampler.forget("ctr");
    assert_eq!(cgroup_usage(&sampler, "ctr", &path).unwrap().cpu.usage_nano_cores, None);
    drop(guard);
    let e = cgroup_usage(&sampler, "ctr", &path).unwrap_err();
    assert!(e.is_not_found() && e.to_string().contains(&path), "{e}");
}

/// Two pinned network namespaces of the test's own, removed on drop (their veths go with them).
struct NetnsGuard {
    /// Removed after the namespaces (fields drop after `drop`).
    dir: tempfile::TempDir,
    pinned: Vec<PathBuf>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        for p in &self.pinned {
            if let Err(e) = netns::remove(p) {
                eprintln!("remove the test network namespace {}: {e}", p.display());
            }
        }
    }
}

fn ip_in(ns: &Path, args: &str) {
    let status = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg("ip")
        .args(args.split_whitespace())
        .status()
        .expect("run nsenter ip");
    assert!(status.success(), "ip {args} in {}: {status}", ns.display());
}

#[test]
fn network_counters_move_with_traffic() {
    if !is_root() {
        return;
    }
    let mut guard = NetnsGuard { pinned: Vec::new(), dir: tempfile::tempdir().unwrap() };
    let pod = netns::create(guard.dir.path(), "pod").unwrap();
    guard.pinned.push(pod.clone());
    let peer = netns::create(guard.dir.path(), "peer").unwrap();
    guard.pinned.push(peer.clone());

    // Only lo so far: no interface to report.
    let empty = read_network(&pod).unwrap();
    assert_eq!((empty.default_interface, empty.interfaces), (None, vec![]));

    // eth1 first, so that eth0 is the default by name, not by being first.
    for (i, name) in [(1, "eth1"), (0, "eth0")] {
        ip_in(&pod, &format!("link add {name} type veth peer name peer{i} netns {}", peer.display()));
        ip_in(&pod, &format!("addr add 10.213.{i}.1/24 dev {name}"));
        ip_in(&pod, &format!("link set {name} up"));
        ip_in(&peer, &format!("addr add 10.213.{i}.2/24 dev peer{i}"));
        ip_in(&peer, &format!("link set peer{i} up"));
    }
    let before = read_network(&pod).unwrap();
    let names: Vec<&str> = before.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth1", "eth0"]);
    let eth0 = before.default_interface.clone().unwrap();
    assert_eq!(eth0.name, "eth0");

    // 10 datagrams of 1000 bytes out of eth0, from a thread of the test's own in the namespace;
    // the peer answers ARP and ICMP port unreachable, so eth0 receives too.
    let ns = std::fs::File::open(&pod).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        let sock = UdpSocket::bind("10.213.0.1:0").unwrap();
        for _ in 0..10 {
            sock.send_to(&[0u8; 1000], "10.213.0.2:9").unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .unwrap();
    let after = wait_for(10, "eth0's counters", || {
        let n = read_network(&pod).unwrap();
        let e = n.default_interface.clone().unwrap();
        (e.tx_bytes >= eth0.tx_bytes + 10_000 && e.rx_bytes > eth0.rx_bytes).then_some(n)
    });
    eprintln!("before {before:?}\nafter {after:?}");
    assert!(after.timestamp > before.timestamp);
    let eth1 = |n: &NetworkUsage| n.interfaces.iter().find(|i| i.name == "eth1").unwrap().clone();
    assert!(eth1(&after).tx_bytes < 10_000, "the traffic went out of eth0 alone: {after:?}");
    let e = after.default_interface.unwrap();
    assert_eq!((e.rx_errors, e.tx_errors), (0, 0));
    drop(guard);
    assert!(read_network(&pod).unwrap_err().is_not_found());
}
