//! `linux.seccomp`: the filter is in force in the container's processes (init and exec'd ones), with the
//! configured actions, errnos, argument conditions and the notify listener handed to its agent.

use std::time::Duration;

use roci_integration::console::ConsoleSocket;
use roci_integration::Container;
use serde_json::json;

const ENOSYS_TEXT: &str = "Function not implemented";
const EPERM_TEXT: &str = "Operation not permitted";

fn with_seccomp(c: &mut Container, seccomp: serde_json::Value) {
    c.spec.set("/linux/seccomp", seccomp);
}

#[test]
fn seccomp_errno_actions_and_defaults() {
    let mut c = Container::new("seccomp_errno");
    c.spec.sh("mkdir /tmp/d; echo mkdir=$?; hostname other; echo hostname=$?; grep Seccomp: /proc/self/status; echo pid-ok-$$");
    with_seccomp(
        &mut c,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_KILL"}
            ]
        }),
    );
    let out = c.run();
    out.ok();
    assert!(out.stdout.contains("mkdir=1") && out.stderr.contains(ENOSYS_TEXT), "errnoRet 38 is ENOSYS: {out}");
    assert!(out.stdout.contains("hostname=1") && out.stderr.contains(EPERM_TEXT), "ERRNO defaults to EPERM: {out}");
    assert!(out.stdout.contains("Seccomp:\t2"), "filter mode: {out}");
    assert!(out.stdout.contains("pid-ok-1"), "allowed syscalls work: {out}");
    assert!(!c.rootfs.join("tmp/d").exists());
    c.assert_no_leaks();
}

#[test]
fn seccomp_argument_conditions() {
    // kill(pid, SIGUSR1) is refused, kill(pid, 0) is not; MASKED_EQ on the signal's low bit refuses
    // SIGHUP (1) as well. (Two tests of the same argument in one rule are ORed, as in runc and
    // libseccomp, so each condition gets its own rule.)
    let mut c = Container::new("seccomp_args");
    c.spec.sh("trap '' USR1 HUP USR2; kill -0 $$; echo zero=$?; kill -USR1 $$; echo usr1=$?; kill -HUP $$; echo hup=$?; kill -USR2 $$; echo usr2=$?");
    with_seccomp(
        &mut c,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }),
    );
    let out = c.run();
    out.ok();
    assert_eq!(out.lines(), ["zero=0", "usr1=1", "hup=1", "usr2=0"], "{out}");
    c.assert_no_leaks();
}

#[test]
fn seccomp_kill_process_action() {
    let mut c = Container::new("seccomp_kill");
    c.spec.sh("exec mkdir /tmp/x");
    with_seccomp(
        &mut c,
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
    );
    let out = c.run();
    assert_eq!(out.code, 128 + libc::SIGSYS, "killed by SIGSYS: {out}");
    c.assert_no_leaks();
}

#[test]
fn seccomp_applies_to_exec() {
    let mut c = Container::new("seccomp_exec");
    c.spec.args(&["sleep", "1000"]);
    with_seccomp(
        &mut c,
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}),
    );
    c.create().ok();
    c.start().ok();
    let out = c.invoke(&["exec", &c.id, "sh", "-c", "mkdir /tmp/y; echo mkdir=$?; grep Seccomp: /proc/self/status"]);
    out.ok();
    assert!(out.stdout.contains("mkdir=1") && out.stdout.contains("Seccomp:\t2"), "{out}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn seccomp_notify_listener_gets_fd_and_state() {
    // The agent receives the listener fd with the container's state; when it closes the listener without
    // answering, the notified syscall fails with ENOSYS.
    let mut c = Container::new("seccomp_notify");
    let sock = c.host_path("agent.sock");
    let agent = ConsoleSocket::listen(&sock, Duration::from_secs(20));
    c.spec.args(&["sh", "-c", "sleep 1; mkdir /tmp/n; echo mkdir=$?"]);
    with_seccomp(
        &mut c,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock.to_str().unwrap(),
            "listenerMetadata": "meta-1",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    c.create().ok();
    let (fd, payload) = agent.received();
    let msg: serde_json::Value = serde_json::from_slice(&payload)
        .unwrap_or_else(|e| panic!("agent message is JSON ({e}): {}", String::from_utf8_lossy(&payload)));
    assert_eq!(msg["fds"], json!(["seccompFd"]), "{msg}");
    assert_eq!(msg["metadata"], "meta-1", "{msg}");
    assert_eq!(msg["state"]["id"], c.id.as_str(), "{msg}");
    assert_eq!(msg["pid"].as_i64(), Some(c.pid() as i64), "the filtered process is the init: {msg}");
    drop(fd);
    let out = c.start();
    out.ok();
    c.wait_status("stopped", Duration::from_secs(10));
    assert!(!c.rootfs.join("tmp/n").exists(), "an unanswered notification never creates the directory");
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn seccomp_bad_profiles_name_the_field() {
    for (name, seccomp, needle) in [
        (
            "sc_bad_op",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_FOO"}]}]}),
            "SCMP_CMP_FOO",
        ),
        ("sc_bad_action", json!({"defaultAction": "SCMP_ACT_BOGUS"}), "SCMP_ACT_BOGUS"),
        (
            "sc_bad_index",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "index",
        ),
        (
            "sc_notify_no_path",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listener",
        ),
    ] {
        let mut c = Container::new(name);
        with_seccomp(&mut c, seccomp);
        let out = c.create();
        out.fails();
        if !roci_integration::runtime().is_runc() {
            // roci names the field or value at fault; runc's libseccomp errors are terser.
            out.says(needle);
        }
        c.assert_no_leaks();
    }
}

/// The compiled filter is reused from roci's cache (by content hash, under the state root) on the next
/// create and exec of the same profile, and a cache entry that went bad is compiled again: the filter is in
/// force every time.
#[test]
fn seccomp_filter_in_force_on_cached_starts() {
    let mut c = Container::new("seccomp_cached");
    c.spec.sh("mkdir /tmp/d; echo mkdir=$?; grep Seccomp: /proc/self/status");
    with_seccomp(
        &mut c,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }),
    );
    let cache = c.state_root.join("seccomp:cache");
    let check = |out: &roci_integration::Output, what: &str| {
        out.ok();
        assert!(out.stdout.contains("mkdir=1") && out.stderr.contains(EPERM_TEXT), "{what}: mkdir is refused: {out}");
        assert!(out.stdout.contains("Seccomp:\t2"), "{what}: filter mode: {out}");
    };
    check(&c.run(), "first run (compiles)");
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    if c.rt.is_roci() {
        assert_eq!(entries().len(), 1, "one compiled filter cached in {}", cache.display());
    }
    check(&c.run(), "second run (from the cache)");
    // exec into a container of the same profile: the same entry.
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    c.start().ok();
    check(&c.invoke(&["exec", &c.id, "sh", "-c", "mkdir /tmp/d; echo mkdir=$?; grep Seccomp: /proc/self/status"]), "exec");
    c.delete_force().ok();
    if c.rt.is_roci() {
        assert_eq!(entries().len(), 1, "exec used the same entry");
        // A corrupt entry: compiled again, the filter still in force.
        std::fs::write(&entries()[0], b"not a filter").unwrap();
        c.spec.sh("mkdir /tmp/d; echo mkdir=$?; grep Seccomp: /proc/self/status");
        check(&c.run(), "run over a corrupt cache entry");
        assert_ne!(std::fs::read(&entries()[0]).unwrap(), b"not a filter", "the corrupt entry was replaced");
    }
    assert!(!c.rootfs.join("tmp/d").exists());
    c.assert_no_leaks();
}
