//! `process`: args, env, cwd, user, umask, capabilities, noNewPrivileges, rlimits, oomScoreAdj.

use roci_integration::rootfs::{EXTRA_GID, TEST_GID, TEST_UID};
use roci_integration::spec::DEFAULT_PATH;
use roci_integration::Container;
use serde_json::json;

use crate::{run_sh, section};

#[test]
fn process_args_env_cwd() {
    let mut c = Container::new("process_args_env");
    c.spec
        .args(&["sh", "-c", "echo \"$0|$1|$FOO|$PATH\"; pwd", "arg zero", "arg one"])
        .env(&[DEFAULT_PATH, "FOO=bar baz"])
        .cwd("/home/test");
    let out = c.run();
    out.ok();
    let path = DEFAULT_PATH.trim_start_matches("PATH=");
    assert_eq!(out.lines(), [format!("arg zero|arg one|bar baz|{path}"), "/home/test".to_string()]);
    c.assert_no_leaks();
}

#[test]
fn process_env_is_exactly_the_config() {
    let out = run_sh("process_env_exact", "env | sort", |c| {
        c.spec.env(&[DEFAULT_PATH, "ONE=1", "TWO=2"]);
    });
    // HOME is added when the config has none (runc: from the user's passwd entry); nothing from the host.
    let lines = out.lines();
    for want in ["ONE=1", "TWO=2", DEFAULT_PATH] {
        assert!(lines.iter().any(|l| l == want), "{want} in {lines:?}");
    }
    assert!(lines.iter().any(|l| l == "HOME=/root"), "HOME from /etc/passwd: {lines:?}");
    for host_only in ["CARGO", "RUST_TEST_THREADS", "ROCI_TEST_RUNTIME"] {
        assert!(!lines.iter().any(|l| l.starts_with(host_only)), "host env leaked: {lines:?}");
    }
}

#[test]
fn process_args_resolved_in_path() {
    let out = run_sh("process_path", "true", |c| {
        c.spec.args(&["echo", "found", "via", "PATH"]);
    });
    assert_eq!(out.stdout, "found via PATH\n");
}

#[test]
fn process_cwd_created_when_missing() {
    // runc creates a missing cwd (mkdir -p, owned by root) rather than failing.
    let mut c = Container::new("process_cwd_missing");
    c.spec.cwd("/new/work/dir").sh("pwd");
    let out = c.run();
    out.ok();
    assert_eq!(out.stdout, "/new/work/dir\n");
    assert!(c.rootfs.join("new/work/dir").is_dir());
    c.assert_no_leaks();
}

#[test]
fn process_user_and_groups() {
    let out = run_sh(
        "process_user",
        "id -u; id -g; grep '^Groups:' /proc/self/status; echo \"== home ==\"; echo $HOME; \
         echo \"== write ==\"; touch /root/x 2>&1; touch /home/test/x && echo ok",
        |c| {
            c.spec.user(TEST_UID, TEST_GID, &[EXTRA_GID]);
        },
    );
    let l = out.lines();
    assert_eq!(l[0], TEST_UID.to_string());
    assert_eq!(l[1], TEST_GID.to_string());
    // Supplementary groups are exactly additionalGids (not read from /etc/group).
    let groups: Vec<&str> = l[2].trim_start_matches("Groups:").split_whitespace().collect();
    assert_eq!(groups, [EXTRA_GID.to_string()], "{out}");
    assert_eq!(section(&out.stdout, "home"), "/home/test", "HOME from /etc/passwd");
    let w = section(&out.stdout, "write");
    assert!(w.contains("Permission denied"), "{out}");
    assert!(w.ends_with("ok"), "{out}");
}

#[test]
fn process_user_without_passwd_entry() {
    let out = run_sh("process_user_nopw", "id -u; id -g; echo $HOME", |c| {
        c.spec.user(4242, 4343, &[]);
    });
    assert_eq!(out.lines()[..2], ["4242", "4343"]);
    assert_eq!(out.lines()[2], "/", "HOME defaults to / without a passwd entry");
}

#[test]
fn process_umask_default_and_set() {
    let out = run_sh("process_umask_default", "umask", |_| {});
    assert_eq!(out.stdout.trim(), "0022", "default umask");
    let out = run_sh("process_umask_set", "umask; touch /tmp/f; stat -c %a /tmp/f", |c| {
        c.spec.umask(0o027);
    });
    assert_eq!(out.lines(), ["0027", "640"]);
}

fn cap_bit(name: &str) -> u32 {
    match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_FOWNER" => 3,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_SETPCAP" => 8,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_CHROOT" => 18,
        "CAP_SYS_ADMIN" => 21,
        "CAP_MKNOD" => 27,
        "CAP_AUDIT_WRITE" => 29,
        other => panic!("add {other} to cap_bit"),
    }
}

fn mask(caps: &[&str]) -> String {
    format!("{:016x}", caps.iter().fold(0u64, |m, c| m | 1 << cap_bit(c)))
}

fn cap_lines(out: &str) -> std::collections::HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once(":\t")).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

/// The configured sets, chosen so that the kernel's execve rules keep each one as configured: root with
/// noNewPrivileges (execve can then grant nothing beyond the old permitted set), effective = permitted,
/// ambient ⊆ permitted ∩ inheritable. (CAP_SYS_RESOURCE is not in this host's bounding set: not used.)
#[test]
fn process_capabilities_root() {
    let bnd = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETUID", "CAP_AUDIT_WRITE"];
    let prm = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let inh = ["CAP_KILL", "CAP_NET_RAW"];
    let amb = ["CAP_KILL"];
    let out = run_sh("caps_root", "grep ^Cap /proc/self/status", |c| {
        c.spec.capabilities(&bnd, &prm, &prm, &inh, &amb).no_new_privileges(true);
    });
    let got = cap_lines(&out.stdout);
    assert_eq!(got["CapBnd"], mask(&bnd), "bounding: {out}");
    assert_eq!(got["CapPrm"], mask(&prm), "permitted: {out}");
    assert_eq!(got["CapEff"], mask(&prm), "effective: {out}");
    assert_eq!(got["CapInh"], mask(&inh), "inheritable: {out}");
    assert_eq!(got["CapAmb"], mask(&amb), "ambient: {out}");
}

/// A non-root user keeps across execve exactly its ambient set as permitted and effective.
#[test]
fn process_capabilities_non_root() {
    let bnd = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    let amb = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let inh = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    let out = run_sh("caps_nonroot", "grep ^Cap /proc/self/status", |c| {
        c.spec.user(TEST_UID, TEST_GID, &[]).capabilities(&bnd, &amb, &amb, &inh, &amb);
    });
    let got = cap_lines(&out.stdout);
    assert_eq!(got["CapBnd"], mask(&bnd), "{out}");
    assert_eq!(got["CapPrm"], mask(&amb), "{out}");
    assert_eq!(got["CapEff"], mask(&amb), "{out}");
    assert_eq!(got["CapInh"], mask(&inh), "{out}");
    assert_eq!(got["CapAmb"], mask(&amb), "{out}");
}

#[test]
fn process_capabilities_enforced() {
    // Without CAP_CHOWN root cannot chown; without CAP_NET_RAW no raw sockets are needed to show it.
    let out = run_sh("caps_enforced", "touch /tmp/f; chown 1000 /tmp/f 2>&1; echo rc=$?", |c| {
        let caps = ["CAP_KILL"];
        c.spec.capabilities(&caps, &caps, &caps, &[], &[]);
    });
    assert!(out.stdout.contains("Operation not permitted"), "{out}");
}

#[test]
fn process_no_new_privileges() {
    let out = run_sh("nnp_on", "grep NoNewPrivs /proc/self/status", |c| {
        c.spec.no_new_privileges(true);
    });
    assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["NoNewPrivs:", "1"]);
    let out = run_sh("nnp_off", "grep NoNewPrivs /proc/self/status", |c| {
        c.spec.no_new_privileges(false);
    });
    assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["NoNewPrivs:", "0"]);
}

#[test]
fn process_rlimits() {
    // Below the host's hard limits (raising a hard limit needs CAP_SYS_RESOURCE, which this host lacks).
    let out = run_sh(
        "rlimits",
        "grep -E 'Max open files|Max core file size|Max processes' /proc/self/limits; echo \"== ulimit ==\"; ulimit -n",
        |c| {
            c.spec.rlimits(json!([
                {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
                {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}
            ]));
        },
    );
    let limits = |name: &str| -> Vec<String> {
        let l = out.stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {out}"));
        l[name.len()..].split_whitespace().take(2).map(String::from).collect()
    };
    assert_eq!(limits("Max open files"), ["512", "1000"]);
    assert_eq!(limits("Max core file size"), ["0", "4096"]);
    assert_eq!(limits("Max processes"), ["300", "400"]);
    assert_eq!(section(&out.stdout, "ulimit"), "512");
}

#[test]
fn process_oom_score_adj() {
    let out = run_sh("oom_score_adj", "cat /proc/self/oom_score_adj", |c| {
        c.spec.oom_score_adj(100);
    });
    assert_eq!(out.stdout.trim(), "100");
}

#[test]
fn process_pid1_is_the_configured_program() {
    let out = run_sh("process_pid1", "true", |c| {
        c.spec.args(&["cat", "/proc/1/cmdline"]);
    });
    assert_eq!(out.stdout, "cat\0/proc/1/cmdline\0", "PID 1 is exec'ed directly, no runtime shim left behind");
}
