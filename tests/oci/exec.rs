//! `exec`: a new process in a running container's namespaces and cgroup.

use std::time::Duration;

use roci_integration::{ns_id, Container};

use crate::section;

fn running(name: &str) -> Container {
    let mut c = Container::new(name);
    c.spec.args(&["sleep", "1000"]).hostname("exec-host");
    c.create().ok();
    c.start().ok();
    c
}

#[test]
fn exec_joins_namespaces_and_cgroup() {
    let c = running("exec_ns");
    let pid = c.pid();
    let out = c.invoke(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "echo \"== ns ==\"; for n in pid net mnt uts ipc; do readlink /proc/self/ns/$n; done; \
         echo \"== host ==\"; hostname; echo \"== cg ==\"; cat /proc/self/cgroup; \
         echo \"== ps ==\"; ps -o pid,args",
    ]);
    out.ok();
    let ns: Vec<String> = section(&out.stdout, "ns").lines().map(String::from).collect();
    let want: Vec<String> = ["pid", "net", "mnt", "uts", "ipc"].iter().map(|n| ns_id(&format!("/proc/{pid}/ns/{n}"))).collect();
    assert_eq!(ns, want, "exec joins every namespace of the init");
    assert_eq!(section(&out.stdout, "host"), "exec-host");
    let ps = section(&out.stdout, "ps");
    assert!(
        ps.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "1000"]),
        "the init is PID 1 of the exec'd process's pid namespace: {ps}"
    );
    let cg = section(&out.stdout, "cg");
    // In every hierarchy (the runtime clones it into the cgroup2 one and it enters each v1 one itself).
    assert!(
        cg.lines().all(|l| l.ends_with(&format!(":{}", c.cgroup))),
        "exec'd process in the container's cgroup in every hierarchy: {cg}"
    );
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn exec_exit_code_and_output() {
    let c = running("exec_exit");
    let out = c.invoke(&["exec", &c.id, "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"), "{out}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn exec_env_cwd_user() {
    let c = running("exec_opts");
    let out = c.invoke(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        &c.id,
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $FOO",
    ]);
    out.ok();
    assert_eq!(out.lines(), ["1000", "1000", "/tmp", "bar"]);
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn exec_detached_with_pid_file() {
    let c = running("exec_detached");
    let pid_file = c.host_path("exec.pid");
    c.invoke(&["exec", "-d", "--pid-file", pid_file.to_str().unwrap(), &c.id, "sleep", "999"]).ok();
    let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid file").trim().parse().unwrap();
    c.record_pid(pid);
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\0999\0");
    c.delete_force().ok();
    roci_integration::wait_until("the exec'd process to die with the container", Duration::from_secs(5), || {
        roci_integration::is_dead(pid)
    });
    c.assert_no_leaks();
}

#[test]
fn exec_in_stopped_container_fails() {
    let mut c = Container::new("exec_stopped");
    c.spec.args(&["true"]);
    c.create().ok();
    c.start().ok();
    c.wait_status("stopped", Duration::from_secs(10));
    // runc 1.1: "cannot exec in a stopped container".
    c.invoke(&["exec", &c.id, "true"]).fails().says("stopped");
    c.delete().ok();
    c.assert_no_leaks();
}
