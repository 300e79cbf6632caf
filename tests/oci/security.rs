//! What a container must not get from the runtime or through it: the runtime's file descriptors, mounts
//! of /proc and /sys redirected by symlinks in the rootfs, masks that follow a symlink onto another file,
//! the runtime's memory and environment through /proc while the init still is the runtime, and signals
//! for a process that merely reuses the pid of a container's dead init.

use std::process::{Command, Stdio};
use std::time::Duration;

use roci_integration::{Container, Output};

use crate::section;

const T: Duration = Duration::from_secs(10);

// --- (a) no runtime fd reaches the container ---

/// `ls` of the shell's own fd dir (`$$`, listed while the shell still runs more commands: a last command
/// would be exec'd in its place), and `ls -l /proc/self/fd`, where ls sees its own open dir too.
const FD_SCRIPT: &str =
    "echo \"== shell ==\"; ls /proc/$$/fd; echo \"== self ==\"; ls -l /proc/self/fd 2>/dev/null; echo \"== end ==\"";

fn numbers(text: &str) -> Vec<u32> {
    let mut v: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    v.sort();
    v
}

/// Checks the output of [`FD_SCRIPT`]: the shell has exactly stdio; `ls -l /proc/self/fd` shows stdio plus
/// one fd above them, the directory ls is reading (whose link is gone by the time ls reads it).
#[track_caller]
fn check_fds(out: &Output) {
    assert_eq!(numbers(&section(&out.stdout, "shell")), [0, 1, 2], "the shell has stdin, stdout, stderr only: {out}");
    let listing = section(&out.stdout, "self");
    let fds: Vec<(u32, Option<String>)> = listing
        .lines()
        .filter(|l| l.starts_with('l'))
        .map(|l| match l.split_once(" -> ") {
            Some((left, target)) => (left.split_whitespace().last().unwrap().parse().unwrap(), Some(target.to_string())),
            None => (l.split_whitespace().last().unwrap().parse().unwrap(), None),
        })
        .collect();
    let nums: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(nums, [0, 1, 2, 3], "ls -l /proc/self/fd: stdio and ls's own directory: {listing}");
    let (_, dir) = &fds[3];
    assert!(
        dir.as_deref().is_none_or(|t| t.starts_with("/proc/")),
        "fd 3 is ls's /proc directory, nothing of the runtime: {listing}"
    );
}

#[test]
fn security_no_fd_leak_into_run() {
    let mut c = Container::new("security_fds_run");
    c.spec.sh(FD_SCRIPT);
    c.write_config();
    let f = c.host_path("open.txt");
    std::fs::write(&f, "x").unwrap();
    let b = c.bundle.to_string_lossy().into_owned();
    // The runtime itself starts with fds 5 and 9 open (not close-on-exec).
    let out = c.invoke_via_shell(&format!("exec 5<'{}' 9<'{}'", f.display(), f.display()), &["run", "--bundle", &b, &c.id]);
    out.ok();
    check_fds(&out);
    c.assert_no_leaks();
}

#[test]
fn security_no_fd_leak_into_exec() {
    let mut c = Container::new("security_fds_exec");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    c.start().ok();
    let f = c.host_path("open.txt");
    std::fs::write(&f, "x").unwrap();
    let out =
        c.invoke_via_shell(&format!("exec 5<'{}' 9<'{}'", f.display(), f.display()), &["exec", &c.id, "sh", "-c", FD_SCRIPT]);
    out.ok();
    check_fds(&out);
    // Nor into the init, whatever the runtime did since create.
    let out = c.invoke(&["exec", &c.id, "ls", "/proc/1/fd"]);
    out.ok();
    assert_eq!(numbers(&out.stdout), [0, 1, 2], "the init has stdio only: {out}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

// --- (b) /proc and /sys only on real directories ---

fn symlinked_mount_point(name: &str, dir: &str) {
    let mut c = Container::new(name);
    let fake = format!("fake{dir}");
    // The rootfs's /proc (or /sys) points elsewhere: mounting through it would put a procfs where the
    // link leads (at worst, outside the rootfs on the host).
    std::fs::remove_dir(c.rootfs.join(dir)).unwrap();
    std::os::unix::fs::symlink(format!("/tmp/{fake}"), c.rootfs.join(dir)).unwrap();
    std::fs::create_dir(c.rootfs.join("tmp").join(&fake)).unwrap();
    c.spec.args(&["true"]);
    let out = c.create();
    // roci: "resolve /proc in ROOTFS: proc is a symlink; a real directory is required".
    // runc 1.1: "filesystem \"proc\" must be mounted on ordinary directory".
    out.fails().says(dir).says_any(&["symlink", "ordinary directory"]);
    let inside = std::fs::read_dir(c.rootfs.join("tmp").join(&fake)).unwrap().count();
    assert_eq!(inside, 0, "nothing mounted or made where the link points: {out}");
    let target = format!("/tmp/{fake}");
    assert!(!roci_integration::host_mount_points().contains(&target), "nothing mounted on the host's {target}");
    c.assert_no_leaks();
}

#[test]
fn security_proc_on_symlink_refused() {
    symlinked_mount_point("security_proc_link", "proc");
}

#[test]
fn security_sys_on_symlink_refused() {
    symlinked_mount_point("security_sys_link", "sys");
}

// --- (c) a masked path that is a symlink masks the link, not its target ---

#[test]
fn security_masked_symlink_not_followed() {
    let mut c = Container::new("security_mask_link");
    std::os::unix::fs::symlink("/etc/passwd", c.rootfs.join("etc/secret")).unwrap();
    c.spec
        .masked_paths(&["/etc/secret"])
        .sh("echo \"== passwd ==\"; cat /etc/passwd; echo \"== secret ==\"; cat /etc/secret; echo \"== end ==\"");
    let out = c.run();
    out.ok();
    let passwd = section(&out.stdout, "passwd");
    if c.rt.is_runc() {
        // runc 1.1 resolves each masked path inside the rootfs (securejoin), following the symlink, and
        // masks its target: /etc/passwd comes out empty.
        assert_eq!(passwd, "", "{out}");
    } else {
        // roci masks the path itself: the link is covered, the file it points to is untouched.
        assert!(passwd.starts_with("root:x:0:0:"), "/etc/passwd is not masked through the link: {out}");
        assert_eq!(section(&out.stdout, "secret"), "", "the masked link reads as /dev/null: {out}");
    }
    assert_eq!(std::fs::read_to_string(c.rootfs.join("etc/passwd")).unwrap(), roci_integration::rootfs::PASSWD);
    c.assert_no_leaks();
}

// --- (d) the init is not dumpable while it is the runtime ---

#[test]
fn security_created_init_not_dumpable() {
    let mut a = Container::new("security_dump_a");
    a.spec.args(&["sleep", "1000"]);
    a.create().ok();
    let apid = a.pid();
    // B shares A's pid namespace (A's init is its PID 1) and has default capabilities: no CAP_SYS_PTRACE.
    let mut b = Container::new("security_dump_b");
    b.spec
        .namespace("pid", Some(&format!("/proc/{apid}/ns/pid")))
        .sh("echo \"== exe ==\"; readlink /proc/1/exe 2>&1 || echo denied; \
         echo \"== environ ==\"; { tr '\\0' '\\n' < /proc/1/environ; } 2>&1 || echo denied; echo \"== end ==\"");
    let out = b.run();
    out.ok();
    let environ = section(&out.stdout, "environ");
    if b.rt.is_runc() {
        // runc 1.1's init waits for `start` as `runc init`, a copy of the runc binary in a memfd (its
        // defence against overwriting the binary, CVE-2019-5736) and dumpable: a container sharing the
        // pid namespace reads its environment (runc's _LIBCONTAINER_* variables).
        assert!(environ.contains("_LIBCONTAINER_INITPIPE"), "{out}");
    } else {
        // roci's init is a clone of roci until it executes the program, and non-dumpable: only
        // CAP_SYS_PTRACE in the runtime's user namespace may open its /proc files.
        assert!(environ.contains("Permission denied"), "/proc/1/environ of the created init: {out}");
        assert!(section(&out.stdout, "exe").ends_with("denied"), "/proc/1/exe of the created init: {out}");
    }
    b.assert_no_leaks();
    // Once started, the init is the user's program, dumpable like any other.
    a.start().ok();
    a.wait_status("running", T);
    let out = b.run();
    out.ok();
    assert_eq!(section(&out.stdout, "exe"), "/bin/busybox", "{out}");
    assert!(section(&out.stdout, "environ").lines().any(|l| l.starts_with("PATH=")), "{out}");
    assert!(!section(&out.stdout, "environ").contains("_LIBCONTAINER"), "{out}");
    b.assert_no_leaks();
    a.delete_force().ok();
    a.assert_no_leaks();
}

// --- (e) a stopped container's pid, reused, is not signalled ---

#[test]
fn security_kill_reused_pid() {
    let mut c = Container::new("security_kill_reuse");
    c.spec.args(&["true"]);
    c.create().ok();
    let dead = c.pid();
    c.start().ok();
    c.wait_status("stopped", T);
    assert!(roci_integration::is_dead(dead));
    // runc: "container not running".
    c.kill("KILL").fails().says("not running");
    // Simulate the pid's reuse: a process of the test's own takes the place of the dead init in the
    // runtime's saved state (the pid only; the start time saved with it stays the init's).
    let mut victim = Victim(Command::new("sleep").arg("1000").stdin(Stdio::null()).spawn().unwrap());
    let vpid = victim.0.id() as i32;
    let state_file = c.state_root.join(&c.id).join("state.json");
    let mut saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    // roci saves `pid`; runc 1.1 saves `init_process_pid`.
    let key = if saved.get("init_process_pid").is_some() { "init_process_pid" } else { "pid" };
    assert!(saved.get(key).is_some(), "no pid in {}: {saved}", state_file.display());
    saved[key] = serde_json::json!(vpid);
    std::fs::write(&state_file, saved.to_string()).unwrap();
    assert_eq!(c.status(), "stopped", "a live process at the saved pid with another start time is not the init");
    c.kill("KILL").fails().says("not running");
    c.kill("TERM").fails().says("not running");
    c.delete().ok();
    std::thread::sleep(Duration::from_millis(100));
    assert!(victim.0.try_wait().unwrap().is_none(), "the process that reused the pid was not signalled");
    drop(victim);
    c.assert_no_leaks();
}

/// A host process of the test's own, killed and reaped however the test ends.
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
