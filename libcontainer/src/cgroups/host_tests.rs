//! Tests against this host's real cgroups (every hierarchy: v1 ones and the
//! cgroup2 tree on a hybrid host, the one tree on a cgroup2-only host): run
//! them as root here and in the cgroup v2 guest (`hack/v2guest/run`). Some
//! also run on a hybrid host's cgroup2 tree alone, to reach the v2 code
//! (device filter, `cgroup.freeze`) on a real kernel.
//!
//! They need root and skip themselves, with a note, otherwise. Each works
//! under its own `/roci-unit-<pid>-<name>` in every hierarchy, which a guard
//! removes even when the test fails; they touch no other cgroup (beyond what
//! the manager itself may write: enabling a controller in v2 ancestors) and
//! kill only processes they started.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::controllers::tests::resources;
use super::*;

/// The layout, or `None` (test skipped) when not root or no cgroups.
fn host() -> Option<&'static Layout> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("note: skipped, needs root to create cgroups");
        return None;
    }
    match detect() {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("note: skipped, no cgroups: {e}");
            None
        }
    }
}

/// Removes this test's cgroups and kills this test's children, also when
/// the test panics.
struct Guard {
    tops: Vec<PathBuf>,
    children: Vec<Child>,
    /// A controller this test enabled in a v2 `cgroup.subtree_control` that
    /// did not have it, to disable again.
    restore: Vec<(PathBuf, String)>,
}

impl Guard {
    fn new(layout: &Layout, top: &str) -> Guard {
        let tops = layout.hierarchies.iter().map(|h| h.mountpoint.join(top.trim_start_matches('/'))).collect();
        Guard { tops, children: Vec::new(), restore: Vec::new() }
    }

    fn spawn(&mut self, cmd: &mut Command) -> Pid {
        let child = cmd.spawn().expect("spawn test process");
        let pid = Pid::from_raw(child.id() as i32);
        self.children.push(child);
        pid
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for top in &self.tops {
            let Ok(mut dirs) = files::descendants(top) else { continue };
            dirs.push(top.clone());
            for d in dirs {
                let deadline = Instant::now() + Duration::from_secs(2);
                while d.exists() {
                    match fs::remove_dir(&d) {
                        Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                            sleep(Duration::from_millis(20))
                        }
                        Err(e) => {
                            eprintln!("guard: cannot remove {}: {e}", d.display());
                            break;
                        }
                        Ok(()) => {}
                    }
                }
            }
        }
        for (dir, controller) in &self.restore {
            if let Err(e) = files::write(dir, "cgroup.subtree_control", &format!("-{controller}")) {
                eprintln!("guard: cannot disable {controller} again in {}: {e}", dir.display());
            }
        }
    }
}

fn top_name(test: &str) -> String {
    format!("/roci-unit-{}-{test}", std::process::id())
}

/// `/proc/<pid>/cgroup` as hierarchy key → path.
fn cgroups_of(pid: Pid) -> BTreeMap<String, String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    layout::parse_proc_cgroup(&text, Path::new("cgroup")).unwrap().into_iter().map(|o| (o.key, o.path)).collect()
}

/// Where `controller` is served for a container at `dir_of(h)`: a v1
/// hierarchy that has it, else the v2 tree when its root offers it.
fn serving(layout: &Layout, controller: &str) -> Option<(Version, usize)> {
    if let Some(i) = layout.hierarchies.iter().position(|h| h.version == Version::V1 && h.has(controller)) {
        return Some((Version::V1, i));
    }
    let i = layout.hierarchies.iter().position(|h| h.version == Version::V2)?;
    let offered = v2::controllers(&layout.hierarchies[i].mountpoint).ok()?;
    offered.iter().any(|c| c == controller).then_some((Version::V2, i))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10));
    }
}

#[test]
fn host_create_apply_join_destroy() {
    let Some(layout) = host() else { return };
    let _turn = V2_ROOT.lock().unwrap_or_else(|p| p.into_inner());
    let top = top_name("life");
    let mut guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c1")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    let dir = |i: usize| layout.hierarchies[i].mountpoint.join(path.path().trim_start_matches('/'));

    // hugetlb, if the v2 tree serves it, is enabled in the v2 parents: note
    // whether the root had it so the guard can put the root back.
    let hugetlb = serving(layout, "hugetlb").filter(|_| Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists());
    if let Some((Version::V2, i)) = hugetlb {
        let root = &layout.hierarchies[i].mountpoint;
        if !files::read(root, "cgroup.subtree_control").unwrap().split_whitespace().any(|c| c == "hugetlb") {
            guard.restore.push((root.clone(), "hugetlb".into()));
        }
    }

    m.create().unwrap();
    for (i, h) in layout.hierarchies.iter().enumerate() {
        assert!(dir(i).is_dir(), "{} missing", dir(i).display());
        if h.has("cpuset") {
            // Both the new parent and the leaf got the root's CPUs.
            let root_cpus = files::read(&h.mountpoint, "cpuset.cpus").unwrap();
            assert_eq!(files::read(&h.mountpoint.join(top.trim_start_matches('/')), "cpuset.cpus").unwrap(), root_cpus);
            assert_eq!(files::read(&dir(i), "cpuset.cpus").unwrap(), root_cpus);
            assert!(!files::read(&dir(i), "cpuset.mems").unwrap().is_empty());
        }
    }
    let has_v2 = layout.hierarchies.iter().any(|h| h.version == Version::V2);
    assert_eq!(m.entry().unwrap().clone_fd().is_some(), has_v2, "CLONE_INTO_CGROUP wherever there is a cgroup2 tree");

    // Limits, each where this host serves it.
    let mut json = String::from(r#"{"pids":{"limit":32}"#);
    json += r#","cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0","mems":"0"}"#;
    let mem = serving(layout, "memory");
    let swap = match mem {
        Some((Version::V1, i)) => files::exists(&dir(i), "memory.memsw.limit_in_bytes"),
        Some((Version::V2, i)) => files::exists(&dir(i), "memory.swap.max") || layout.mode == Mode::Unified,
        None => false,
    };
    if swap {
        json += r#","memory":{"limit":67108864,"reservation":33554432,"swap":134217728}"#;
    } else {
        json += r#","memory":{"limit":67108864,"reservation":33554432}"#;
    }
    if hugetlb.is_some() {
        json += r#","hugepageLimits":[{"pageSize":"2MB","limit":4194304}]"#;
    }
    json += "}";
    m.apply(&resources(&json)).unwrap();

    let check = |controller: &str, v1: (&str, &str), v2: (&str, &str)| match serving(layout, controller) {
        Some((Version::V1, i)) => assert_eq!(files::read(&dir(i), v1.0).unwrap(), v1.1, "{}", v1.0),
        Some((Version::V2, i)) => assert_eq!(files::read(&dir(i), v2.0).unwrap(), v2.1, "{}", v2.0),
        None => eprintln!("note: no {controller} controller here, not checked"),
    };
    check("pids", ("pids.max", "32"), ("pids.max", "32"));
    check("cpu", ("cpu.shares", "512"), ("cpu.weight", "20"));
    check("cpu", ("cpu.cfs_quota_us", "50000"), ("cpu.max", "50000 100000"));
    check("cpu", ("cpu.cfs_period_us", "100000"), ("cpu.max", "50000 100000"));
    check("cpuset", ("cpuset.cpus", "0"), ("cpuset.cpus", "0"));
    check("cpuset", ("cpuset.mems", "0"), ("cpuset.mems", "0"));
    check("memory", ("memory.limit_in_bytes", "67108864"), ("memory.max", "67108864"));
    check("memory", ("memory.soft_limit_in_bytes", "33554432"), ("memory.low", "33554432"));
    if swap {
        check("memory", ("memory.memsw.limit_in_bytes", "134217728"), ("memory.swap.max", "67108864"));
    }
    if let Some((version, i)) = hugetlb {
        check("hugetlb", ("hugetlb.2MB.limit_in_bytes", "4194304"), ("hugetlb.2MB.max", "4194304"));
        // The reservation limit too, where the kernel has it (5.7+), as runc.
        let rsvd = if version == Version::V1 { "hugetlb.2MB.rsvd.limit_in_bytes" } else { "hugetlb.2MB.rsvd.max" };
        if files::exists(&dir(i), rsvd) {
            assert_eq!(files::read(&dir(i), rsvd).unwrap(), "4194304", "{rsvd}");
        } else {
            eprintln!("note: no {rsvd} on this kernel, not checked");
        }
    }
    // update-style: raise memory and memory+swap together (v1 needs memsw first).
    if swap {
        m.apply(&resources(r#"{"memory":{"limit":201326592,"swap":268435456}}"#)).unwrap();
        check("memory", ("memory.limit_in_bytes", "201326592"), ("memory.max", "201326592"));
        check("memory", ("memory.memsw.limit_in_bytes", "268435456"), ("memory.swap.max", "67108864"));
    }

    // A real process joins every hierarchy.
    let pid = guard.spawn(Command::new("sleep").arg("1000"));
    m.add_process(pid).unwrap();
    m.add_process(pid).unwrap(); // already inside: harmless
    let cg = cgroups_of(pid);
    for h in &layout.hierarchies {
        assert_eq!(cg.get(&h.key()).map(String::as_str), Some(path.path()), "hierarchy {:?}", h.key());
    }
    assert_eq!(m.pids().unwrap(), [pid]);

    // The process makes a child cgroup and moves into it, where it can
    // (not v1 cpuset, which would need seeding).
    for (i, h) in layout.hierarchies.iter().enumerate() {
        if h.has("cpuset") {
            continue;
        }
        let sub = dir(i).join("sub");
        fs::create_dir(&sub).unwrap();
        files::write(&sub, "cgroup.procs", &pid.to_string()).unwrap();
    }
    assert_eq!(m.pids().unwrap(), [pid], "descendants count");

    let start = Instant::now();
    m.destroy().unwrap();
    eprintln!("destroy took {:?}", start.elapsed());
    for i in 0..layout.hierarchies.len() {
        assert!(!dir(i).exists(), "{} left", dir(i).display());
    }
    let status = guard.children[0].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    assert!(m.pids().unwrap().is_empty());
    m.destroy().unwrap(); // gone: not an error
}

#[test]
fn host_destroy_kills_forked_children_and_ignores_zombies() {
    let Some(layout) = host() else { return };
    let top = top_name("forks");
    let mut guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();

    // A shell that forks two sleeps once it is inside.
    let sh = guard.spawn(Command::new("sh").args(["-c", "read x; sleep 1000 & sleep 1000 & wait"]).stdin(Stdio::piped()));
    m.add_process(sh).unwrap();
    guard.children[0].stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    wait_for("the shell's children", || m.pids().unwrap().len() == 3);

    // A zombie: killed, not reaped (this test is its parent).
    let z = guard.spawn(Command::new("sleep").arg("1000"));
    m.add_process(z).unwrap();
    nix::sys::signal::kill(z, nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the zombie", || {
        fs::read_to_string(format!("/proc/{z}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
    });
    assert!(!m.pids().unwrap().contains(&z), "a zombie is not listed in cgroup.procs");

    let start = Instant::now();
    m.destroy().unwrap();
    assert!(start.elapsed() < Duration::from_secs(3), "destroy took {:?}", start.elapsed());
    for h in &layout.hierarchies {
        assert!(!h.mountpoint.join(path.path().trim_start_matches('/')).exists());
    }
}

#[test]
fn host_relative_paths_follow_this_process_without_creating_anything() {
    let Some(layout) = host() else { return };
    let own = fs::read_to_string(PROC_SELF_CGROUP).unwrap();
    let own: BTreeMap<String, String> =
        layout::parse_proc_cgroup(&own, Path::new(PROC_SELF_CGROUP)).unwrap().into_iter().map(|o| (o.key, o.path)).collect();
    let p = resolve_path(Some("roci-unit-rel"), "id").unwrap();
    for h in &layout.hierarchies {
        let mine = own[&h.key()].trim_end_matches('/');
        assert_eq!(p.in_hierarchy(h), format!("{mine}/roci-unit-rel"), "hierarchy {:?}", h.key());
    }
    assert_eq!(resolve_path(Some("/roci-unit-abs/x"), "id").unwrap().path(), "/roci-unit-abs/x");
    // Building the manager touches nothing.
    let m = manager(&p).unwrap();
    assert!(m.mount_sources().iter().all(|s| !s.host_dir.exists()));
}

#[test]
fn host_unavailable_controller_and_bad_values_name_the_field() {
    let Some(layout) = host() else { return };
    let top = top_name("errors");
    let _guard = Guard::new(layout, &top);
    let mut m = layout.manager(&CgroupPath::new(&format!("{top}/c")).unwrap()).unwrap();
    m.create().unwrap();
    if serving(layout, "cpuset").is_some() {
        let e = m.apply(&resources(r#"{"cpu":{"cpus":"4096"}}"#)).unwrap_err();
        assert!(e.to_string().contains("cpuset.cpus"), "{e}");
    }
    if layout.mode == Mode::Hybrid && serving(layout, "memory").is_some_and(|(v, _)| v == Version::V1) {
        // memory is v1 here, so the cgroup2 tree cannot take memory.high.
        let e = m.apply(&resources(r#"{"unified":{"memory.high":"1"}}"#)).unwrap_err();
        assert!(
            e.to_string().starts_with("linux.resources.unified[\"memory.high\"]: memory controller not available in /"),
            "{e}"
        );
    }
    m.destroy().unwrap();
}

/// Tests that enable hugetlb in the v2 root and disable it again take turns.
static V2_ROOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The host's cgroup2 tree alone, as a cgroup2-only host would be: on a
/// hybrid host the only way to run the v2-only code against a real kernel
/// (with whatever controllers the tree has: hugetlb on the test host).
#[test]
fn host_v2_tree_alone_as_a_unified_layout() {
    let Some(host) = host() else { return };
    let Some(v2h) = host.v2().cloned() else {
        eprintln!("note: skipped, no cgroup2 tree");
        return;
    };
    let _turn = V2_ROOT.lock().unwrap_or_else(|p| p.into_inner());
    let layout = Layout { mode: Mode::Unified, hierarchies: vec![v2h.clone()] };
    let top = top_name("v2only");
    let mut guard = Guard::new(&layout, &top);
    let root_offers = v2::controllers(&v2h.mountpoint).unwrap();
    let root_enabled = files::read(&v2h.mountpoint, "cgroup.subtree_control").unwrap();
    for c in &root_offers {
        if !root_enabled.split_whitespace().any(|e| e == c) {
            guard.restore.push((v2h.mountpoint.clone(), c.clone()));
        }
    }
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let dir = v2h.mountpoint.join(path.path().trim_start_matches('/'));
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();

    // Every controller the root offers reached the container.
    let mut got = v2::controllers(&dir).unwrap();
    let mut want = root_offers.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // The fd for CLONE_INTO_CGROUP is the container's directory.
    let entry = m.entry().unwrap();
    let fd = entry.clone_fd().expect("clone fd on a unified layout");
    let st = nix::sys::stat::fstat(fd).unwrap();
    assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&fs::metadata(&dir).unwrap()));
    assert_eq!(m.mount_sources()[0].name, "");

    if root_offers.iter().any(|c| c == "hugetlb") && files::exists(&dir, "hugetlb.2MB.max") {
        m.apply(&resources(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#)).unwrap();
        assert_eq!(files::read(&dir, "hugetlb.2MB.max").unwrap(), "2097152");
    }
    if !root_offers.iter().any(|c| c == "memory") {
        let e = m.apply(&resources(r#"{"memory":{"limit":67108864}}"#)).unwrap_err();
        let want = format!("linux.resources.memory.limit: memory controller not available in {}", dir.display());
        assert!(e.to_string().starts_with(&want), "{e}");
    }

    let pid = guard.spawn(Command::new("sleep").arg("1000"));
    m.add_process(pid).unwrap();
    assert_eq!(cgroups_of(pid).get("").map(String::as_str), Some(path.path()));
    assert_eq!(m.pids().unwrap(), [pid]);
    // The v2 freezer, used when cgroup.kill is missing.
    if v2::freezer::try_freeze(&dir).unwrap() {
        assert!(files::read(&dir, "cgroup.events").unwrap().lines().any(|l| l == "frozen 1"));
        v2::freezer::thaw(&dir).unwrap();
        assert!(files::read(&dir, "cgroup.events").unwrap().lines().any(|l| l == "frozen 0"));
    }
    m.destroy().unwrap();
    assert!(!dir.exists());
    let status = guard.children[0].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
}

/// The host's v1 hierarchies alone, as a v1-only host: no cgroup.kill, so
/// destroy freezes (v1 freezer) and kills each process.
#[test]
fn host_v1_hierarchies_alone_kill_through_the_freezer() {
    let Some(host) = host() else { return };
    let v1: Vec<Hierarchy> = host.hierarchies.iter().filter(|h| h.version == Version::V1).cloned().collect();
    if v1.is_empty() {
        eprintln!("note: skipped, no cgroup v1 hierarchies");
        return;
    }
    let layout = Layout { mode: Mode::Legacy, hierarchies: v1 };
    let top = top_name("v1only");
    let mut guard = Guard::new(&layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    assert!(m.entry().unwrap().clone_fd().is_none());
    let sh =
        guard.spawn(Command::new("sh").args(["-c", "read x; sleep 1000 & sleep 1000 & sleep 1000 & wait"]).stdin(Stdio::piped()));
    m.add_process(sh).unwrap();
    guard.children[0].stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    wait_for("the shell's children", || m.pids().unwrap().len() == 4);
    if let Some(fz) = layout.hierarchies.iter().find(|h| h.has("freezer")) {
        let dir = fz.mountpoint.join(path.path().trim_start_matches('/'));
        assert!(v1::freezer::try_freeze(&dir).unwrap());
        assert_eq!(files::read(&dir, "freezer.state").unwrap(), "FROZEN");
        v1::freezer::thaw(&dir).unwrap();
    }
    m.destroy().unwrap();
    for h in &layout.hierarchies {
        assert!(!h.mountpoint.join(path.path().trim_start_matches('/')).exists());
    }
}

/// The guard the other tests rely on: a test that panics mid-way leaves no
/// cgroup and no process behind.
#[test]
fn host_guard_cleans_up_after_a_panic() {
    let Some(layout) = host() else { return };
    let top = top_name("panic");
    let pid = std::sync::Mutex::new(None);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut guard = Guard::new(layout, &top);
        let mut m = layout.manager(&CgroupPath::new(&format!("{top}/c/d")).unwrap()).unwrap();
        m.create().unwrap();
        let p = guard.spawn(Command::new("sleep").arg("1000"));
        m.add_process(p).unwrap();
        *pid.lock().unwrap() = Some(p);
        panic!("test failure with a populated cgroup");
    }));
    assert!(r.is_err());
    for h in &layout.hierarchies {
        assert!(!h.mountpoint.join(top.trim_start_matches('/')).exists(), "{} left", h.mountpoint.display());
    }
    let p = pid.lock().unwrap().expect("the process was started");
    assert!(!Path::new(&format!("/proc/{p}")).exists(), "process {p} left");
}

// ---------------------------------------------------------------------------
// Device rules, freezing, statistics, OOM events.

/// Run `script` under `sh -c` (with `args` as `$1`...) inside the cgroup:
/// the shell waits for a line on stdin, is moved in, then runs; its stdout
/// lines, once it has exited.
fn probe(guard: &mut Guard, m: &dyn Manager, script: &str, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("read x; {script}")).arg("sh").args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let pid = guard.spawn(&mut cmd);
    m.add_process(pid).unwrap();
    let child = guard.children.last_mut().unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    child.wait().unwrap();
    out.lines().map(str::to_owned).collect()
}

/// For each path: `PATH rw` with `r`/`w` replaced by `-` where opening it
/// for reading/writing failed; for `mknod:PATH`, whether `mknod PATH c 1 5`
/// worked.
const DEVICE_PROBE: &str = r#"for f in "$@"; do
    case $f in
    mknod:*) if mknod "${f#mknod:}" c 1 5; then echo "$f ok"; else echo "$f denied"; fi ;;
    *) r=-; w=-; ( : <"$f" ) && r=r; ( : >>"$f" ) && w=w; echo "$f $r$w" ;;
    esac
done"#;

/// Device rules on a real cgroup: what a process inside can open and mknod,
/// before and after an update, and a rule set cgroup v1 cannot represent.
fn devices_roundtrip(layout: &Layout, name: &str) {
    let top = top_name(name);
    let mut guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    let v1_dir =
        layout.hierarchies.iter().find(|h| h.has("devices")).map(|h| h.mountpoint.join(path.path().trim_start_matches('/')));
    let v2_dir = layout.v2().map(|h| h.mountpoint.join(path.path().trim_start_matches('/')));
    let tmp = tempfile::tempdir().unwrap();
    let node = |n: &str| format!("mknod:{}", tmp.path().join(n).display());

    let rules = super::devices::tests::rules(&["deny a *:* rwm", "allow c 1:3 rw", "allow c 1:5 r", "allow c *:* m"]);
    m.set_devices(&rules).unwrap();
    if let Some(d) = &v1_dir {
        // In the rules' order (runtime-spec: "apply entries in the listed order").
        assert_eq!(files::read(d, "devices.list").unwrap(), "c 1:3 rw\nc 1:5 r\nc *:* m");
    } else {
        assert_eq!(v2::devices::attached(v2_dir.as_ref().unwrap()).unwrap().len(), 1);
    }
    let n1 = node("n1");
    let got = probe(&mut guard, &*m, DEVICE_PROBE, &["/dev/null", "/dev/zero", "/dev/full", &n1]);
    assert_eq!(got, ["/dev/null rw", "/dev/zero r-", "/dev/full --", &format!("{n1} ok")]);
    // This process, outside the cgroup, is not affected.
    fs::File::open("/dev/full").unwrap();

    // Update: no more mknod, nor /dev/zero; /dev/full read-write.
    let rules = super::devices::tests::rules(&["deny a *:* rwm", "allow c 1:3 rwm", "allow c 1:7 rw"]);
    m.set_devices(&rules).unwrap();
    if let Some(d) = &v1_dir {
        assert_eq!(files::read(d, "devices.list").unwrap(), "c 1:3 rwm\nc 1:7 rw");
    } else {
        assert_eq!(v2::devices::attached(v2_dir.as_ref().unwrap()).unwrap().len(), 1, "the old filter was replaced");
    }
    let n2 = node("n2");
    let got = probe(&mut guard, &*m, DEVICE_PROBE, &["/dev/null", "/dev/zero", "/dev/full", &n2]);
    assert_eq!(got, ["/dev/null rw", "/dev/zero --", "/dev/full rw", &format!("{n2} denied")]);

    // A deny punching a hole into a wildcard allow is refused, and changes nothing.
    let bad = super::devices::tests::rules(&["deny a *:* rwm", "allow c *:* rwm", "deny c 1:5 rwm"]);
    let e = m.set_devices(&bad).unwrap_err();
    assert!(e.to_string().contains("punch a hole"), "{e}");
    if let Some(d) = &v1_dir {
        assert_eq!(files::read(d, "devices.list").unwrap(), "c 1:3 rwm\nc 1:7 rw");
    }

    // The runtime's defaults after the spec's deny-all: /dev/zero is back.
    let spec: Vec<oci_spec::runtime::LinuxDeviceCgroup> = serde_json::from_str(r#"[{"allow":false,"access":"rwm"}]"#).unwrap();
    m.set_devices(&device_rules(&spec, &[]).unwrap()).unwrap();
    let got = probe(&mut guard, &*m, DEVICE_PROBE, &["/dev/zero", "/dev/full"]);
    assert_eq!(got, ["/dev/zero rw", "/dev/full rw"]);
    m.destroy().unwrap();
}

#[test]
fn host_device_rules_decide_what_a_process_inside_can_open() {
    let Some(layout) = host() else { return };
    devices_roundtrip(layout, "devices");
}

/// The BPF device filter on this host's cgroup2 tree, alone (on a hybrid
/// host `set_devices` uses the v1 controller; the filter works here too).
/// The layout is marked hybrid so that nothing is enabled in the root.
#[test]
fn host_device_filter_on_the_v2_tree_alone() {
    let Some(host) = host() else { return };
    let Some(v2h) = host.v2().cloned() else {
        eprintln!("note: skipped, no cgroup2 tree");
        return;
    };
    if host.mode == Mode::Unified {
        eprintln!("note: skipped, the host test covers a cgroup2-only host");
        return;
    }
    devices_roundtrip(&Layout { mode: Mode::Hybrid, hierarchies: vec![v2h] }, "devices-v2");
}

/// Freeze and thaw a cgroup whose shell keeps forking, as `pause` and
/// `resume` do; then destroy it while paused, as `delete --force` does.
fn freeze_roundtrip(layout: &Layout, name: &str) {
    let top = top_name(name);
    let mut guard = Guard::new(layout, &top);
    let mut m = layout.manager(&CgroupPath::new(&format!("{top}/c")).unwrap()).unwrap();
    m.create().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let counter = tmp.path().join("n");
    let script = r#"read x; i=0; while :; do i=$((i+1)); echo $i >"$0.tmp"; mv "$0.tmp" "$0"; done"#;
    let pid = guard.spawn(Command::new("sh").args(["-c", script]).arg(&counter).stdin(Stdio::piped()));
    m.add_process(pid).unwrap();
    guard.children[0].stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let count = || fs::read_to_string(&counter).unwrap_or_default();
    wait_for("the counter", || !count().is_empty());
    assert!(!m.is_frozen().unwrap());

    let start = Instant::now();
    m.freeze().unwrap();
    eprintln!("freeze took {:?}", start.elapsed());
    assert!(m.is_frozen().unwrap());
    let before = count();
    sleep(Duration::from_millis(200));
    assert_eq!(count(), before, "a frozen shell does not count");

    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    wait_for("the counter to move again", || count() != before);

    m.freeze().unwrap();
    m.destroy().unwrap();
    let status = guard.children[0].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
}

#[test]
fn host_freeze_thaw_and_destroy_while_frozen() {
    let Some(layout) = host() else { return };
    freeze_roundtrip(layout, "freeze");
}

#[test]
fn host_freeze_with_cgroup_freeze_on_the_v2_tree_alone() {
    let Some(host) = host() else { return };
    let Some(v2h) = host.v2().cloned() else {
        eprintln!("note: skipped, no cgroup2 tree");
        return;
    };
    if host.mode == Mode::Unified {
        eprintln!("note: skipped, the host test covers a cgroup2-only host");
        return;
    }
    freeze_roundtrip(&Layout { mode: Mode::Hybrid, hierarchies: vec![v2h] }, "freeze-v2");
}

/// A process that allocates `mib` MiB, burns some CPU, says `ready`, and
/// waits for a line on stdin; started outside, moved in, then let go.
fn hog(guard: &mut Guard, m: &dyn Manager, mib: u32) -> Pid {
    let perl = format!(r#"my $x = "a" x ({mib} << 20); my $i = 0; $i++ while $i < 3000000; $| = 1; print "ready\n"; <STDIN>;"#);
    let mut cmd = Command::new("sh");
    cmd.args(["-c", r#"read x; exec perl -e "$0""#, &perl]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let pid = guard.spawn(&mut cmd);
    m.add_process(pid).unwrap();
    let child = guard.children.last_mut().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    pid
}

#[test]
fn host_stats_report_a_real_process_in_runcs_shape() {
    let Some(layout) = host() else { return };
    let _turn = V2_ROOT.lock().unwrap_or_else(|p| p.into_inner());
    let top = top_name("stats");
    let mut guard = Guard::new(layout, &top);
    let mut m = layout.manager(&CgroupPath::new(&format!("{top}/c")).unwrap()).unwrap();
    m.create().unwrap();
    let has = |c| serving(layout, c).is_some();
    let mut r = String::from("{");
    if has("memory") {
        r += r#""memory":{"limit":268435456},"#;
    }
    if has("pids") {
        r += r#""pids":{"limit":32},"#;
    }
    r = r.trim_end_matches(',').to_owned() + "}";
    m.apply(&resources(&r)).unwrap();
    hog(&mut guard, &*m, 24);

    let s = m.stats().unwrap();
    eprintln!("{}", serde_json::to_string(&s).unwrap());
    assert!(s.cpu.usage.total > 10_000_000, "perl counted to 3 million: {:?}", s.cpu.usage);
    assert!(s.cpu.usage.user > 0, "{:?}", s.cpu.usage);
    if layout.hierarchies.iter().any(|h| h.has("cpuacct")) {
        assert!(!s.cpu.usage.percpu.is_empty());
    }
    if has("memory") {
        assert!(s.memory.usage.usage >= 24 << 20, "{:?}", s.memory.usage);
        assert_eq!(s.memory.usage.limit, 268435456);
        assert!(!s.memory.raw.is_empty());
    }
    assert_eq!(s.pids.current, 1, "the shell exec'd perl: {:?}", s.pids);
    if has("pids") {
        assert_eq!(s.pids.limit, 32);
    }
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    assert!(json["cpu"]["usage"].get("kernel").is_some());
    assert!(json["memory"]["usage"].get("limit").is_some());
    assert!(json["hugetlb"].is_object());
    m.destroy().unwrap();
    let e = m.stats().unwrap_err();
    assert!(e.to_string().contains("No such file"), "{e}");
}

#[test]
fn host_update_changes_a_running_cgroup_and_refuses_a_limit_below_usage() {
    let Some(layout) = host() else { return };
    let top = top_name("update");
    let mut guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    let dir = |c: &str| {
        let (_, i) = serving(layout, c).unwrap();
        layout.hierarchies[i].mountpoint.join(path.path().trim_start_matches('/'))
    };
    let mem = serving(layout, "memory");
    let swap = match mem {
        Some((Version::V1, _)) => files::exists(&dir("memory"), "memory.memsw.limit_in_bytes"),
        Some((Version::V2, _)) => files::exists(&dir("memory"), "memory.swap.max"),
        None => false,
    };
    let both =
        |limit: u64| if swap { format!(r#"{{"limit":{limit},"swap":{limit}}}"#) } else { format!(r#"{{"limit":{limit}}}"#) };
    if mem.is_some() {
        m.apply(&resources(&format!(r#"{{"memory":{}}}"#, both(128 << 20)))).unwrap();
    }
    // (perl builds the string, then copies it: twice this in use)
    hog(&mut guard, &*m, 24);

    // runc update --memory 96M --memory-swap 96M --pids-limit 20 --cpu-quota 50000
    let mut r = vec![r#""cpu":{"quota":50000,"period":100000}"#.to_owned()];
    if mem.is_some() {
        r.push(format!(r#""memory":{}"#, both(96 << 20)));
    }
    if serving(layout, "pids").is_some() {
        r.push(r#""pids":{"limit":20}"#.to_owned());
    }
    m.apply(&resources(&format!("{{{}}}", r.join(",")))).unwrap();
    match serving(layout, "cpu") {
        Some((Version::V1, _)) => assert_eq!(files::read(&dir("cpu"), "cpu.cfs_quota_us").unwrap(), "50000"),
        Some((Version::V2, _)) => assert_eq!(files::read(&dir("cpu"), "cpu.max").unwrap(), "50000 100000"),
        None => {}
    }
    if serving(layout, "pids").is_some() {
        assert_eq!(files::read(&dir("pids"), "pids.max").unwrap(), "20");
    }
    match mem {
        Some((Version::V1, _)) => {
            assert_eq!(files::read(&dir("memory"), "memory.limit_in_bytes").unwrap(), (96u64 << 20).to_string());
            if swap {
                assert_eq!(files::read(&dir("memory"), "memory.memsw.limit_in_bytes").unwrap(), (96u64 << 20).to_string());
            }
            // Below what perl holds (no swap to push it to): v1 refuses.
            let no_swap = fs::read_to_string("/proc/swaps").unwrap().lines().count() <= 1;
            if no_swap {
                let e = m.apply(&resources(r#"{"memory":{"limit":8388608}}"#)).unwrap_err();
                let msg = e.to_string();
                assert!(msg.starts_with("invalid linux.resources.memory.limit: 8388608 is below what the cgroup uses"), "{msg}");
                assert_eq!(files::read(&dir("memory"), "memory.limit_in_bytes").unwrap(), (96u64 << 20).to_string());
            }
        }
        Some((Version::V2, _)) => {
            assert_eq!(files::read(&dir("memory"), "memory.max").unwrap(), (96u64 << 20).to_string());
            if swap {
                assert_eq!(files::read(&dir("memory"), "memory.swap.max").unwrap(), "0");
            }
            // v2 would OOM-kill instead; checkBeforeUpdate refuses first.
            let e = m.apply(&resources(r#"{"memory":{"limit":8388608,"checkBeforeUpdate":true}}"#)).unwrap_err();
            assert!(e.to_string().contains("is below the current usage"), "{e}");
        }
        None => {}
    }
    m.destroy().unwrap();
}

/// A process allocating past a small memory limit is OOM-killed; the
/// notifier fires and the kill is counted.
#[test]
fn host_oom_kill_is_notified_and_counted() {
    let Some(layout) = host() else { return };
    let Some((version, i)) = serving(layout, "memory") else {
        eprintln!("note: skipped, no memory controller");
        return;
    };
    let top = top_name("oom");
    let mut guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    let dir = layout.hierarchies[i].mountpoint.join(path.path().trim_start_matches('/'));
    let swap_file = if version == Version::V1 { "memory.memsw.limit_in_bytes" } else { "memory.swap.max" };
    let r = if files::exists(&dir, swap_file) {
        r#"{"memory":{"limit":33554432,"swap":33554432}}"#
    } else {
        r#"{"memory":{"limit":33554432}}"#
    };
    m.apply(&resources(r)).unwrap();
    assert_eq!(m.oom_kill_count().unwrap(), 0);
    let mut notifier = m.oom_notifier().unwrap();
    assert_eq!(notifier.read_events().unwrap(), OomEvents::default());

    let pid =
        guard.spawn(Command::new("sh").args(["-c", r#"read x; exec perl -e '$x = "a" x (256 << 20)'"#]).stdin(Stdio::piped()));
    m.add_process(pid).unwrap();
    guard.children[0].stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let status = guard.children[0].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "OOM-killed");

    let ev = notifier.wait(Some(Duration::from_secs(5))).unwrap();
    assert!(ev.count >= 1 && !ev.cgroup_removed, "{ev:?}");
    assert!(m.oom_kill_count().unwrap() >= 1);
    if version == Version::V1 {
        let mem = m.stats().unwrap().memory;
        assert!(mem.usage.max > 30 << 20, "the peak reached the limit: {:?}", mem.usage);
    }

    m.destroy().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !notifier.wait(Some(Duration::from_millis(100))).unwrap().cgroup_removed {
        assert!(Instant::now() < deadline, "the notifier never saw the cgroup go");
    }
}

/// A loop device over a temporary file, detached on drop.
struct Loop {
    dev: String,
    /// `major:minor`.
    num: String,
    /// The I/O scheduler the device had when attached.
    scheduler: Option<String>,
    _file: tempfile::NamedTempFile,
}

impl Loop {
    /// `None` (with a note) where there is no loop driver or `losetup`.
    fn new() -> Option<Loop> {
        // No module is loaded here: the host is left as found (the v2 guest
        // loads `loop` itself).
        if !Path::new("/dev/loop-control").exists() {
            eprintln!("note: skipped, no loop driver (/dev/loop-control)");
            return None;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(16 << 20).unwrap();
        let out = match Command::new("losetup").args(["-f", "--show"]).arg(file.path()).output() {
            Ok(o) if o.status.success() => o,
            other => {
                eprintln!("note: skipped, no loop device: {other:?}");
                return None;
            }
        };
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let name = dev.trim_start_matches("/dev/");
        let num = fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap().trim().to_owned();
        let mut lo = Loop { dev, num, scheduler: None, _file: file };
        lo.scheduler = files::read(&lo.queue(), "scheduler")
            .ok()
            .and_then(|s| s.split_whitespace().find(|w| w.starts_with('[')).map(|w| w.trim_matches(['[', ']']).to_owned()));
        Some(lo)
    }

    fn queue(&self) -> PathBuf {
        Path::new("/sys/block").join(self.dev.trim_start_matches("/dev/")).join("queue")
    }

    /// Whether the kernel offers the scheduler `name` for this device now,
    /// without loading anything.
    fn offers(&self, name: &str) -> bool {
        files::read(&self.queue(), "scheduler")
            .is_ok_and(|s| s.split_whitespace().any(|w| w.trim_start_matches('[').trim_end_matches(']') == name))
    }

    /// Switch this (our own) device's I/O scheduler; whether it took. Only
    /// for a scheduler the device `offers`: writing another name makes the
    /// kernel try to load it as a module.
    fn scheduler(&self, name: &str) -> bool {
        if !self.offers(name) {
            return false;
        }
        let _ = files::write(&self.queue(), "scheduler", name);
        files::read(&self.queue(), "scheduler").is_ok_and(|s| s.contains(&format!("[{name}]")))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // The loop device outlives its detach: give it back its scheduler.
        if let Some(s) = &self.scheduler {
            let _ = files::write(&self.queue(), "scheduler", s);
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Read 2 MiB from `dev` with O_DIRECT (v1 throttles only direct I/O) in
/// the cgroup; how long it took.
fn timed_read(guard: &mut Guard, m: &dyn Manager, dev: &str) -> Duration {
    let pid = guard.spawn(
        Command::new("sh")
            .args(["-c", r#"read x; exec dd if="$0" of=/dev/null bs=64k count=32 iflag=direct status=none"#, dev])
            .stdin(Stdio::piped()),
    );
    m.add_process(pid).unwrap();
    let child = guard.children.last_mut().unwrap();
    let start = Instant::now();
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success(), "dd failed");
    start.elapsed()
}

/// `blockIO` on a loop device of the test's own: every file gets its
/// value, the read limit really slows a reader down, a rate of 0 lifts a
/// limit, and bad devices are refused naming the entry.
#[test]
fn host_block_io_limits_a_loop_device() {
    let Some(layout) = host() else { return };
    let Some((version, i)) = serving(layout, "blkio").or_else(|| serving(layout, "io")) else {
        eprintln!("note: skipped, no blkio/io controller");
        return;
    };
    let Some(lo) = Loop::new() else { return };
    let _turn = V2_ROOT.lock().unwrap_or_else(|p| p.into_inner());
    let top = top_name("blkio");
    let mut guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    let dir = layout.hierarchies[i].mountpoint.join(path.path().trim_start_matches('/'));
    // Weights need a proportional-weight scheduler: BFQ, used only where the
    // kernel already offers it (naming one it does not list would load its
    // module), set on this test's own loop device.
    let bfq = lo.offers("bfq") && lo.scheduler("bfq");
    let weight_files: &[&str] =
        if version == Version::V1 { &["blkio.weight", "blkio.bfq.weight"] } else { &["io.bfq.weight", "io.weight"] };
    let weight_file = weight_files.iter().copied().find(|f| files::exists(&dir, f));
    eprintln!("blockIO on {} ({}), {version:?}, BFQ: {bfq}, weight file: {weight_file:?}", lo.dev, lo.num);
    let n = &lo.num;
    let (major, minor) = n.split_once(':').unwrap();
    let entry = |rate: u64| format!(r#"[{{"major":{major},"minor":{minor},"rate":{rate}}}]"#);
    let throttles = format!(
        r#""throttleReadBpsDevice":{},"throttleWriteBpsDevice":{},"throttleReadIOPSDevice":{},"throttleWriteIOPSDevice":{}"#,
        entry(1 << 20),
        entry(2 << 20),
        entry(1000),
        entry(2000)
    );
    let read = |f: &str| files::read(&dir, f).unwrap();
    let throttle_file = if version == Version::V1 { "blkio.throttle.read_bps_device" } else { "io.max" };
    let mut json = throttles.clone();
    match weight_file {
        Some(_) => json += r#","weight":300"#,
        None => {
            // No scheduler here takes a cgroup weight: refused naming the
            // field, before any limit is written.
            let e = m.apply(&resources(&format!(r#"{{"blockIO":{{"weight":300,{throttles}}}}}"#))).unwrap_err();
            assert!(e.to_string().contains(blockio::WEIGHT), "{e}");
            assert!(!read(throttle_file).contains(n.as_str()), "a limit was written: {}", read(throttle_file));
            eprintln!("note: no proportional-weight I/O scheduler here, weights refused as they should be, not applied");
        }
    }
    if bfq {
        json += &format!(r#","weightDevice":[{{"major":{major},"minor":{minor},"weight":400}}]"#);
    }
    m.apply(&resources(&format!(r#"{{"blockIO":{{{json}}}}}"#))).unwrap();
    if version == Version::V1 {
        if let Some(weight) = weight_file {
            assert_eq!(read(weight), "300");
        }
        if bfq {
            assert!(
                read("blkio.bfq.weight_device").lines().any(|l| l == format!("{n} 400")),
                "{}",
                read("blkio.bfq.weight_device")
            );
        }
        assert_eq!(read("blkio.throttle.read_bps_device"), format!("{n} 1048576"));
        assert_eq!(read("blkio.throttle.write_bps_device"), format!("{n} 2097152"));
        assert_eq!(read("blkio.throttle.read_iops_device"), format!("{n} 1000"));
        assert_eq!(read("blkio.throttle.write_iops_device"), format!("{n} 2000"));
    } else {
        match weight_file {
            Some("io.bfq.weight") => {
                assert!(read("io.bfq.weight").lines().any(|l| l == "default 300"), "{}", read("io.bfq.weight"));
                if bfq {
                    assert!(read("io.bfq.weight").lines().any(|l| l == format!("{n} 400")), "{}", read("io.bfq.weight"));
                }
            }
            Some(_) => {
                let want = format!("default {}", blockio::v2_weight(300));
                assert!(read("io.weight").lines().any(|l| l == want), "{want}: {}", read("io.weight"))
            }
            None => {}
        }
        assert_eq!(read("io.max"), format!("{n} rbps=1048576 wbps=2097152 riops=1000 wiops=2000"));
    }

    // 2 MiB at 1 MiB/s: over a second (unthrottled it takes milliseconds).
    let took = timed_read(&mut guard, &*m, &lo.dev);
    eprintln!("2 MiB through a 1 MiB/s limit took {took:?}");
    assert!(took > Duration::from_millis(900), "not throttled: {took:?}");
    let s = m.stats().unwrap();
    let (maj, min): (u64, u64) = (major.parse().unwrap(), minor.parse().unwrap());
    let read_bytes: u64 = s
        .blkio
        .io_service_bytes_recursive
        .iter()
        .filter(|e| (e.major, e.minor) == (maj, min) && e.op == "Read")
        .map(|e| e.value)
        .sum();
    assert!(read_bytes >= 2 << 20, "stats: {:?}", s.blkio);

    // update: a rate of 0 lifts the read limit.
    m.apply(&resources(&format!(r#"{{"blockIO":{{"throttleReadBpsDevice":{}}}}}"#, entry(0)))).unwrap();
    if version == Version::V1 {
        assert_eq!(read("blkio.throttle.read_bps_device"), "");
    } else {
        assert_eq!(read("io.max"), format!("{n} rbps=max wbps=2097152 riops=1000 wiops=2000"));
    }
    let took = timed_read(&mut guard, &*m, &lo.dev);
    assert!(took < Duration::from_millis(900), "still throttled: {took:?}");

    // Devices the kernel would refuse, named before anything is written.
    let e = m.apply(&resources(r#"{"blockIO":{"throttleWriteBpsDevice":[{"major":4095,"minor":1,"rate":1}]}}"#)).unwrap_err();
    assert!(
        e.to_string().starts_with("invalid linux.resources.blockIO.throttleWriteBpsDevice: [0] 4095:1: no such block device"),
        "{e}"
    );
    // A device weight on a device whose scheduler has no weights.
    if lo.scheduler("none") {
        let e = m
            .apply(&resources(&format!(r#"{{"blockIO":{{"weightDevice":[{{"major":{major},"minor":{minor},"weight":500}}]}}}}"#)))
            .unwrap_err();
        let msg = e.to_string();
        if weight_file.is_none() && version == Version::V1 {
            // No weight files at all in this cgroup.
            assert!(
                msg.starts_with("invalid linux.resources.blockIO.weightDevice: ") && msg.contains("no per-device weights"),
                "{msg}"
            );
        } else {
            assert!(msg.starts_with(&format!("invalid linux.resources.blockIO.weightDevice: [0] {n}: ")), "{msg}");
        }
        if bfq || version == Version::V2 {
            assert!(msg.contains("does not do per-cgroup weights") && msg.contains("Operation not supported"), "{msg}");
        }
    }
    m.destroy().unwrap();
}

/// `rdma`, `misc` (through `unified`) and `network`: applied where this
/// host serves them, an error naming the field where it does not.
#[test]
fn host_rdma_misc_and_network() {
    let Some(layout) = host() else { return };
    let top = top_name("rdma");
    let _guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    let dir = |i: usize| layout.hierarchies[i].mountpoint.join(path.path().trim_start_matches('/'));

    // rdma: a device the kernel has (the guest run makes a soft-RoCE one).
    let devices: Vec<String> = fs::read_dir("/sys/class/infiniband")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    match serving(layout, "rdma") {
        None => {
            let e = m.apply(&resources(r#"{"rdma":{"mlx5_0":{"hcaHandles":1}}}"#)).unwrap_err();
            assert!(e.to_string().starts_with("linux.resources.rdma: rdma controller not available in "), "{e}");
        }
        Some((_, i)) => {
            let e = m.apply(&resources(r#"{"rdma":{"roci-none":{"hcaHandles":1}}}"#)).unwrap_err();
            assert!(e.to_string().starts_with("invalid linux.resources.rdma: \"roci-none\": no such RDMA device"), "{e}");
            match devices.first() {
                Some(d) => {
                    eprintln!("rdma: limiting device {d}");
                    m.apply(&resources(&format!(r#"{{"rdma":{{"{d}":{{"hcaHandles":2}}}}}}"#))).unwrap();
                    let max = files::read(&dir(i), "rdma.max").unwrap();
                    assert!(max.lines().any(|l| l.trim() == format!("{d} hca_handle=2 hca_object=max")), "{max}");
                    m.apply(&resources(&format!(r#"{{"rdma":{{"{d}":{{"hcaObjects":100}}}}}}"#))).unwrap();
                    let max = files::read(&dir(i), "rdma.max").unwrap();
                    assert!(max.lines().any(|l| l.trim() == format!("{d} hca_handle=2 hca_object=100")), "{max}");
                }
                None => eprintln!("note: no RDMA device, rdma.max not written"),
            }
        }
    }

    // misc: only through `unified`.
    let v2_offers = layout.v2().map(|h| v2::controllers(&h.mountpoint).unwrap_or_default()).unwrap_or_default();
    if layout.v2().is_none() {
        eprintln!("note: no cgroup2 tree, misc not checked");
    } else if !v2_offers.iter().any(|c| c == "misc") {
        let e = m.apply(&resources(r#"{"unified":{"misc.max":"sev 1"}}"#)).unwrap_err();
        assert!(e.to_string().starts_with("linux.resources.unified[\"misc.max\"]: misc controller not available in "), "{e}");
    } else {
        let (_, i) = serving(layout, "misc").unwrap();
        let capacity = files::read(&layout.hierarchies[i].mountpoint, "misc.capacity").unwrap_or_default();
        match capacity.split_whitespace().next() {
            Some(res) => {
                m.apply(&resources(&format!(r#"{{"unified":{{"misc.max":"{res} 0"}}}}"#))).unwrap();
                assert!(files::read(&dir(i), "misc.max").unwrap().lines().any(|l| l == format!("{res} 0")));
            }
            None => eprintln!("note: no misc resource on this machine (misc.capacity is empty)"),
        }
        let e = m.apply(&resources(r#"{"unified":{"misc.max":"roci-none 1"}}"#)).unwrap_err();
        assert!(e.to_string().starts_with("linux.resources.unified[\"misc.max\"]: write \"roci-none 1\" to "), "{e}");
        assert!(e.to_string().contains("Invalid argument"), "{e}");
        let e = m.apply(&resources(r#"{"unified":{"misc.bogus":"1"}}"#)).unwrap_err();
        assert!(e.to_string().starts_with("invalid linux.resources.unified: \"misc.bogus\": no such file in "), "{e}");
    }

    // network: v1 only; ignored on a cgroup2-only host.
    let r = resources(r#"{"network":{"classID":1048577,"priorities":[{"name":"lo","priority":5}]}}"#);
    match (layout.mode, serving(layout, "net_cls").filter(|(v, _)| *v == Version::V1), serving(layout, "net_prio")) {
        (Mode::Unified, ..) => m.apply(&r).unwrap(),
        (_, Some((_, i)), Some((_, j))) => {
            m.apply(&r).unwrap();
            assert_eq!(files::read(&dir(i), "net_cls.classid").unwrap(), "1048577");
            assert!(files::read(&dir(j), "net_prio.ifpriomap").unwrap().lines().any(|l| l == "lo 5"));
        }
        _ => {
            let e = m.apply(&r).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("linux.resources.network.classID: net_cls controller not available in any mounted cgroup v1"),
                "{e}"
            );
        }
    }
    m.destroy().unwrap();
}

/// Values only the kernel knows to be wrong come back naming the field;
/// values a pure check refuses change nothing.
#[test]
fn host_cpu_values_the_kernel_refuses_name_the_field() {
    let Some(layout) = host() else { return };
    let Some((version, i)) = serving(layout, "cpu") else {
        eprintln!("note: skipped, no cpu controller");
        return;
    };
    let _turn = V2_ROOT.lock().unwrap_or_else(|p| p.into_inner());
    let top = top_name("cpuerr");
    let _guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    let dir = layout.hierarchies[i].mountpoint.join(path.path().trim_start_matches('/'));
    let file = if version == Version::V1 { "cpu.cfs_quota_us" } else { "cpu.max" };
    let before = files::read(&dir, file).unwrap();
    // Above the kernel's largest quota (2^44 - 1 µs): EINVAL.
    let e = m.apply(&resources(r#"{"cpu":{"quota":1125899906842624,"period":100000}}"#)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("linux.resources.cpu.quota: write \"1125899906842624"), "{msg}");
    assert!(msg.contains("Invalid argument"), "{msg}");
    // Below the least quota: refused before the kernel sees it.
    let e = m.apply(&resources(r#"{"cpu":{"quota":999,"period":100000}}"#)).unwrap_err();
    assert!(e.to_string().starts_with("invalid linux.resources.cpu.quota: 999 µs is below"), "{e}");
    assert_eq!(files::read(&dir, file).unwrap(), before);
    m.destroy().unwrap();
}

/// `exec --cgroup`: a process joins an existing sub-cgroup in every
/// hierarchy (or one controller's), and on a cgroup2-only host can be
/// cloned straight into it.
#[test]
fn host_exec_joins_a_sub_cgroup() {
    let Some(layout) = host() else { return };
    let top = top_name("sub");
    let mut guard = Guard::new(layout, &top);
    let path = CgroupPath::new(&format!("{top}/c")).unwrap();
    let mut m = layout.manager(&path).unwrap();
    m.create().unwrap();
    let dir = |h: &Hierarchy| h.mountpoint.join(path.path().trim_start_matches('/'));
    let sub = SubCgroup::parse(&["/s"]).unwrap();
    let e = m.sub_cgroup(&sub).unwrap_err();
    assert!(e.to_string().starts_with("invalid --cgroup: ") && e.to_string().contains("/s does not exist"), "{e}");
    for h in &layout.hierarchies {
        fs::create_dir(dir(h).join("s")).unwrap();
    }
    let dirs = m.sub_cgroup(&sub).unwrap();
    let pid = guard.spawn(Command::new("sleep").arg("1000"));
    if let Some(h) = layout.hierarchies.iter().find(|h| h.has("cpuset")) {
        // A new v1 cpuset has no CPUs: refused, and left to its maker.
        let e = dirs.add_process(pid).unwrap_err();
        assert!(e.to_string().contains("cpuset.cpus is empty"), "{e}");
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let v = files::read(&dir(h), f).unwrap();
            files::write(&dir(h).join("s"), f, &v).unwrap();
        }
    }
    dirs.add_process(pid).unwrap();
    let want = format!("{}/s", path.path());
    let cg = cgroups_of(pid);
    for h in &layout.hierarchies {
        assert_eq!(cg.get(&h.key()), Some(&want), "hierarchy {:?}", h.key());
    }
    assert_eq!(m.pids().unwrap(), [pid], "a sub-cgroup's processes are the container's");

    if layout.mode == Mode::Unified {
        let e = m.sub_cgroup(&SubCgroup::parse(&["memory:s"]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("cgroup v2 has one hierarchy"), "{e}");
        // clone3(CLONE_INTO_CGROUP) with the sub-cgroup's fd.
        let entry = dirs.entry().unwrap();
        let fd = entry.clone_fd().expect("an fd on a cgroup2-only host");
        let child = crate::sys::clone_process(0, Some(fd), &mut [], || {
            nix::unistd::pause();
            0
        })
        .unwrap();
        let born = cgroups_of(child.pid);
        let _ = nix::sys::signal::kill(child.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child.pid, None);
        assert!(child.in_cgroup);
        assert_eq!(born.get(""), Some(&want));
    } else if let Some(h) = layout.hierarchies.iter().find(|h| h.has("memory")) {
        // One controller: memory moves, the others stay where they are.
        fs::create_dir(dir(h).join("m")).unwrap();
        let pid = guard.spawn(Command::new("sleep").arg("1000"));
        m.add_process(pid).unwrap();
        m.sub_cgroup(&SubCgroup::parse(&["memory:m"]).unwrap()).unwrap().add_process(pid).unwrap();
        let cg = cgroups_of(pid);
        assert_eq!(cg["memory"], format!("{}/m", path.path()));
        let others = layout.hierarchies.iter().filter(|o| !o.has("memory"));
        for o in others {
            assert_eq!(cg.get(&o.key()).map(String::as_str), Some(path.path()), "{:?}", o.key());
        }
    }
    m.destroy().unwrap();
    assert!(!dir(&layout.hierarchies[0]).exists());
}
