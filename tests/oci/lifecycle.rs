//! `run`, `create`/`start`/`state`/`kill`/`delete` and the status machine they drive.

use std::time::Duration;

use roci_integration::wait::wait_file;
use roci_integration::{is_dead, Container};

use crate::{parse_mountinfo, run_sh, section};

const T: Duration = Duration::from_secs(10);

#[test]
fn run_hostname_pid1_and_output() {
    let out = run_sh(
        "run_hostname",
        "echo \"== host ==\"; hostname; echo \"== pid ==\"; echo $$; read pid rest < /proc/self/stat; echo $pid",
        |c| {
            c.spec.hostname("it-host");
        },
    );
    assert_eq!(section(&out.stdout, "host"), "it-host");
    // `$$` and /proc/self/stat read by the shell's builtin `read` (so /proc/self is the shell itself).
    assert_eq!(section(&out.stdout, "pid"), "1\n1", "the container's process must be PID 1: {out}");
}

#[test]
fn run_own_mount_namespace() {
    let out = run_sh("run_mountns", "cat /proc/self/mountinfo", |_| {});
    let entries = parse_mountinfo(&out.stdout);
    assert!(!entries.is_empty(), "no mountinfo: {out}");
    // Only the rootfs and what config.json asks for (proc, dev, sys and their masks) may be visible.
    for e in &entries {
        let p = e.mount_point.as_str();
        assert!(
            p == "/" || p.starts_with("/proc") || p.starts_with("/dev") || p.starts_with("/sys"),
            "host mount {p} visible in the container:\n{}",
            out.stdout
        );
    }
    let root = crate::mount_at(&entries, "/");
    assert_ne!(root.fstype, "rootfs", "container root is still the initial rootfs");
}

#[test]
fn run_exit_code_propagated() {
    let mut c = Container::new("run_exit_code");
    c.spec.sh("exit 3");
    let out = c.run();
    assert_eq!(out.code, 3, "the runtime must exit with the container's exit code: {out}");
    c.assert_no_leaks();
}

#[test]
fn run_exit_code_of_signal() {
    // A process killed by a signal: runc exits 128+signal, like a shell.
    let mut c = Container::new("run_exit_signal");
    c.spec.sh("sleep 100 & kill -9 $!; wait $!; exit $?");
    let out = c.run();
    assert_eq!(out.code, 137, "{out}");
    c.assert_no_leaks();
}

#[test]
fn run_stdout_stderr_passed_through() {
    let mut c = Container::new("run_stdio");
    c.spec.sh("echo to-stdout; echo to-stderr >&2");
    let out = c.run();
    out.ok();
    assert_eq!(out.stdout, "to-stdout\n");
    assert!(out.stderr.contains("to-stderr\n"), "{out}");
    assert!(!out.stdout.contains("to-stderr"), "{out}");
    c.assert_no_leaks();
}

#[test]
fn run_detached_then_delete() {
    let mut c = Container::new("run_detached");
    c.spec.args(&["sleep", "1000"]);
    c.run_with(&["-d"]).ok();
    assert_eq!(c.status(), "running");
    let pid = c.pid();
    assert!(!is_dead(pid));
    c.kill("KILL").ok();
    c.wait_status("stopped", T);
    c.delete().ok();
    c.assert_no_leaks();
}

/// create → created (user program not run yet) → start → running (it ran) → kill → stopped → delete → gone.
#[test]
fn lifecycle_create_start_kill_delete() {
    let mut c = Container::new("lifecycle");
    let out_dir = c.host_path("out");
    std::fs::create_dir(&out_dir).unwrap();
    c.spec.bind(&out_dir, "/out", false).sh("echo started > /out/ran; exec sleep 1000");
    c.create().ok();

    let st = c.state();
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().expect("pid in state") as i32;
    assert!(pid > 0 && !is_dead(pid), "created container has a live init process: {st}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!out_dir.join("ran").exists(), "the user program ran before start");

    c.start().ok();
    wait_file(&out_dir.join("ran"), T, |s| s == "started\n");
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid(), pid, "start must not change the init pid");

    c.kill("KILL").ok();
    c.wait_status("stopped", T);

    c.delete().ok();
    let gone = c.try_state().expect_err("state of a deleted container must fail");
    gone.fails().says("does not exist");
    c.assert_no_leaks();
}

#[test]
fn state_json_fields() {
    let mut c = Container::new("state_fields");
    c.spec.args(&["sleep", "1000"]).annotation("org.roci.test", "value-1").annotation("other", "2");
    c.create().ok();
    let st = c.state();
    assert!(st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()), "ociVersion: {st}");
    assert_eq!(st["id"], c.id.as_str());
    assert!(st["pid"].as_i64().is_some_and(|p| p > 0), "pid: {st}");
    assert_eq!(st["status"], "created");
    assert_eq!(st["bundle"], c.bundle.to_str().unwrap());
    assert_eq!(st["rootfs"], c.rootfs.to_str().unwrap(), "rootfs is the absolute rootfs path");
    let created = st["created"].as_str().expect("created");
    chrono::DateTime::parse_from_rfc3339(created).unwrap_or_else(|e| panic!("created {created:?} is not RFC3339: {e}"));
    assert!(st["owner"].is_string(), "owner: {st}");
    assert_eq!(st["annotations"]["org.roci.test"], "value-1");
    assert_eq!(st["annotations"]["other"], "2");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn killed_from_outside_is_stopped() {
    let mut c = Container::new("killed_outside");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    c.start().ok();
    let pid = c.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    c.wait_status("stopped", T);
    c.delete().ok();
    c.assert_no_leaks();
}

/// A PID 1 shell that exits with 7 on SIGTERM (PID 1 ignores signals it has no handler for).
const TERM_TRAP: &str = "trap 'exit 7' TERM; sleep 1000 & wait";

fn started(name: &str, script: &str) -> Container {
    let mut c = Container::new(name);
    c.spec.sh(script);
    c.create().ok();
    c.start().ok();
    c
}

#[test]
fn kill_by_name_kill() {
    let c = started("kill_name_kill", "exec sleep 1000");
    c.kill("KILL").ok();
    c.wait_status("stopped", T);
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn kill_by_name_sigterm() {
    let c = started("kill_name_sigterm", TERM_TRAP);
    // The trap is installed once the shell runs `sleep`; wait for that child before signalling.
    let pid = c.pid();
    roci_integration::wait_until("the shell to start sleep", T, || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).is_ok_and(|s| !s.trim().is_empty())
    });
    c.kill("SIGTERM").ok();
    c.wait_status("stopped", T);
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn kill_by_number() {
    let c = started("kill_number", "exec sleep 1000");
    c.kill("9").ok();
    c.wait_status("stopped", T);
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn kill_default_signal_is_term() {
    let c = started("kill_default", TERM_TRAP);
    let pid = c.pid();
    roci_integration::wait_until("the shell to start sleep", T, || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).is_ok_and(|s| !s.trim().is_empty())
    });
    c.invoke(&["kill", &c.id]).ok();
    c.wait_status("stopped", T);
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn kill_all_processes() {
    let c = started("kill_all", "sleep 1000 & sleep 1001 & exec sleep 1002");
    let init = c.pid();
    roci_integration::wait_until("three processes in the container", T, || {
        roci_integration::cgroups::procs("pids", &c.cgroup).len() == 3
    });
    let pids = roci_integration::cgroups::procs("pids", &c.cgroup);
    for p in &pids {
        c.record_pid(*p);
    }
    c.invoke(&["kill", "--all", &c.id, "KILL"]).ok();
    c.wait_status("stopped", T);
    roci_integration::wait_until("every container process to die", T, || pids.iter().all(|p| is_dead(*p)));
    assert!(pids.contains(&init));
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn kill_stopped_container_fails() {
    let c = started("kill_stopped", "exit 0");
    c.wait_status("stopped", T);
    // runc 1.1: "container not running".
    c.kill("KILL").fails().says("not running");
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn delete_running_needs_force() {
    let c = started("delete_running", "exec sleep 1000");
    // runc 1.1: "cannot delete container ID that is not stopped: running".
    c.delete().fails().says("not stopped");
    assert_eq!(c.status(), "running", "a refused delete must leave the container running");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn delete_created_container() {
    let mut c = Container::new("delete_created");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    let pid = c.pid();
    c.delete().ok();
    roci_integration::wait_until("the created init to die", T, || is_dead(pid));
    c.assert_no_leaks();
}

#[test]
fn start_twice_fails() {
    let c = started("start_twice", "exec sleep 1000");
    c.start().fails();
    assert_eq!(c.status(), "running");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn state_of_unknown_container_fails() {
    let c = Container::new("state_unknown");
    c.try_state().expect_err("no such container").fails().says("does not exist");
}
