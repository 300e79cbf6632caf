//! Podman (Debian's podman 4.3 with conmon 2.1) in front of the runtime under test.
//!
//! Each test starts its own podman, everything in a temp dir ([`harness`] says how, and what it does
//! to keep off the host's `/etc/containers`, `/var/lib/containers` and network), with the busybox image
//! loaded and the runtime under test as `--runtime`, behind a wrapper that records every invocation.
//! conmon calls the runtime as it calls runc: `--log-format=json --log FILE create --bundle --pid-file
//! [--console-socket] [--preserve-fds N]`, `exec --pid-file --process FILE --detach [--tty
//! --console-socket]`; podman itself calls `start`, `kill ID SIGNAL`, `delete --force`, `pause`,
//! `resume`, `update --resources=FILE`, `--version`. No network: containers and pods run with `--network
//! none`. Each test ends with [`harness::Podman::assert_clean`]: the runtime forgot every container it
//! created, their cgroups are gone, no conmon or container process and no mount is left.
//!
//! Not tested here: `podman container checkpoint` (CRIU cannot run on this host's kernel, with any runtime),
//! networks (podman 4.3's CNI/netavark setup would change the host's network), the systemd cgroup manager
//! (no systemd on these hosts).

mod harness;

use std::time::{Duration, Instant};

use harness::{Podman, BUSYBOX};

use crate::status_field;
use roci_integration::{cgroups, ns_id, wait_for, wait_until, Output};

/// Panics unless `out` exited with `code`, showing the runtime calls made so far.
#[track_caller]
fn expect(pm: &Podman, out: &Output, code: i32) {
    assert!(!out.timed_out && out.code == code, "expected exit code {code}: {out}\n--- runtime calls ---\n{}", pm.calls_text());
}

/// Read a cgroup file of a container: `v1` on a v1 or hybrid host, `v2` on a pure v2 host.
#[track_caller]
fn cg_read(controller: &str, rel: &str, v1: &str, v2: &str) -> String {
    let file = if cgroups::is_v2() { v2 } else { v1 };
    cgroups::read(controller, rel, file)
        .unwrap_or_else(|| panic!("cannot read {file} of cgroup {rel}: {}", cgroups::dir(controller, rel).display()))
}

/// The container's `linux.cgroupsPath` as podman wrote it.
#[track_caller]
fn cgroups_path(pm: &Podman, id: &str) -> String {
    let cfg = pm.config_json(id);
    cfg.pointer("/linux/cgroupsPath").and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no cgroupsPath in {cfg}")).to_string()
}

/// Wait until `podman logs NAME` shows `needle`.
#[track_caller]
fn wait_log(pm: &Podman, name: &str, needle: &str) {
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(10), || {
        let out = pm.podman(&["logs", name]);
        last = format!("{}{}", out.stdout, out.stderr);
        last.contains(needle)
    });
    assert!(ok, "{name}'s log never showed {needle:?}; last: {last:?}");
}

#[test]
fn podman_run_rm_echo_and_hostname() {
    let pm = Podman::new("podman_run_rm_echo_and_hostname");
    let out = pm.run(&["--rm", BUSYBOX, "sh", "-c", "echo hi; hostname"]);
    expect(&pm, &out, 0);
    let ids = pm.created_ids();
    assert_eq!(ids.len(), 1, "one create expected:\n{}", pm.calls_text());
    // Without --hostname podman names the container's host after the short container id.
    assert_eq!(out.lines(), ["hi".to_string(), ids[0][..12].to_string()], "{out}");
    // conmon's create, as for runc: JSON log, bundle, pid file; then podman's start and delete.
    let create = &pm.calls_of("create")[0];
    for flag in ["--log-format=json", "--log ", "--bundle ", "--pid-file "] {
        assert!(create.contains(flag), "create call without {flag}: {create}");
    }
    assert_eq!(pm.calls_of("start").len(), 1, "{}", pm.calls_text());
    assert!(pm.calls_of("delete").iter().any(|c| c.contains("--force") && c.contains(&ids[0])), "{}", pm.calls_text());
    pm.assert_clean();
}

#[test]
fn podman_run_exit_code_propagated() {
    let pm = Podman::new("podman_run_exit_code_propagated");
    expect(&pm, &pm.run(&["--rm", BUSYBOX, "sh", "-c", "exit 3"]), 3);
    expect(&pm, &pm.run(&["-d", "--name", "seven", BUSYBOX, "sh", "-c", "exit 7"]), 0);
    let waited = pm.podman(&["wait", "seven"]);
    expect(&pm, &waited, 0);
    assert_eq!(waited.stdout.trim(), "7", "{waited}");
    assert_eq!(pm.inspect("seven", "{{.State.ExitCode}}"), "7");
    pm.ok(&["rm", "seven"]);
    pm.assert_clean();
}

#[test]
fn podman_run_user_and_bind_volume() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let pm = Podman::new("podman_run_user_and_bind_volume");
    let vol = pm.dir.join("host/vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(vol.join("f"), "from-host\n").unwrap();
    let bind = format!("{}:/data", vol.display());
    let out = pm.run(&[
        "--rm",
        "--user",
        "1000",
        "-v",
        &bind,
        BUSYBOX,
        "sh",
        "-c",
        "id -u; id -g; cat /data/f; echo u > /data/by-user",
    ]);
    expect(&pm, &out, 0);
    assert_eq!(out.lines(), ["1000", "1000", "from-host"], "{out}");
    let meta = std::fs::metadata(vol.join("by-user")).expect("the container's file on the host");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let out = pm.run(&["--rm", "-v", &bind, BUSYBOX, "sh", "-c", "echo r > /data/by-root"]);
    expect(&pm, &out, 0);
    assert_eq!(std::fs::read_to_string(vol.join("by-root")).unwrap(), "r\n");
    let ro = format!("{}:/ro:ro", vol.display());
    let out = pm.run(&["--rm", "-v", &ro, BUSYBOX, "sh", "-c", "cat /ro/f && echo x > /ro/y"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("from-host") && out.stderr.contains("Read-only file system"), "{out}");
    assert!(!vol.join("y").exists());
    pm.assert_clean();
}

/// podman maps the runtime's error text to its exit code: "not found"/"no such file" → 127,
/// "permission denied" → 126 (as runc words a directory or a file without `x` as program).
#[test]
fn podman_run_missing_or_unexecutable_program() {
    let pm = Podman::new("podman_run_missing_or_unexecutable_program");
    let out = pm.run(&["--rm", BUSYBOX, "/nonexistent"]);
    expect(&pm, &out, 127);
    assert!(out.stderr.contains("OCI runtime attempted to invoke a command that was not found"), "{out}");
    for prog in ["/etc", "/etc/passwd"] {
        let out = pm.run(&["--rm", BUSYBOX, prog]);
        expect(&pm, &out, 126);
        assert!(out.stderr.contains("permission denied") && out.stderr.contains("OCI permission denied"), "{prog}: {out}");
    }
    pm.assert_clean();
}

/// After a failed create podman runs `delete --force ID` to be sure the runtime forgot the container;
/// runc exits 0 for a container it does not have, so podman prints the one error that matters.
#[test]
fn podman_failed_create_reports_only_the_runtime_error() {
    let pm = Podman::new("podman_failed_create_reports_only_the_runtime_error");
    let out = pm.run(&["--rm", BUSYBOX, "/nonexistent"]);
    expect(&pm, &out, 127);
    let id = pm.created_ids().pop().expect("a create call");
    assert!(
        pm.calls_of("delete").iter().any(|c| c.contains("--force") && c.ends_with(&id)),
        "podman did not delete --force the failed container:\n{}",
        pm.calls_text()
    );
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() == 1 && lines[0].starts_with("Error: "), "podman should print only the create error: {out}");
    pm.assert_clean();
}

#[test]
fn podman_exec_exit_codes_and_errors() {
    let pm = Podman::new("podman_exec_exit_codes_and_errors");
    expect(&pm, &pm.run(&["-d", "--name", "e", BUSYBOX, "sleep", "1000"]), 0);
    expect(&pm, &pm.sh("e", "exit 5"), 5);
    let out = pm.podman(&["exec", "e", "/nonexistent"]);
    expect(&pm, &out, 127);
    for prog in ["/etc", "/etc/passwd"] {
        let out = pm.podman(&["exec", "e", prog]);
        expect(&pm, &out, 126);
        assert!(out.stderr.contains("permission denied"), "{prog}: {out}");
    }
    // Every exec goes through conmon: a process file, detached, with a pid file.
    let execs = pm.calls_of("exec");
    assert_eq!(execs.len(), 4, "{}", pm.calls_text());
    for c in &execs {
        for flag in ["--process ", "--detach", "--pid-file "] {
            assert!(c.contains(flag), "exec call without {flag}: {c}");
        }
    }
    pm.ok(&["rm", "-f", "-t", "0", "e"]);
    pm.assert_clean();
}

#[test]
fn podman_detached_logs_exec_stop_rm() {
    let pm = Podman::new("podman_detached_logs_exec_stop_rm");
    let script = "echo started; trap 'echo got-term; exit 0' TERM; while :; do sleep 0.1; done";
    expect(&pm, &pm.run(&["-d", "--name", "web", BUSYBOX, "sh", "-c", script]), 0);
    let id = pm.id_of("web");
    wait_log(&pm, "web", "started");
    let out = pm.sh("web", "echo in-exec; cat /proc/1/cmdline | tr '\\0' ' '");
    expect(&pm, &out, 0);
    assert_eq!(out.lines(), ["in-exec".to_string(), format!("sh -c {script}")], "{out}");
    let out = pm.podman(&[
        "exec",
        "--user",
        "1000",
        "--workdir",
        "/tmp",
        "--env",
        "FOO=bar",
        "web",
        "sh",
        "-c",
        "id -u; pwd; echo $FOO",
    ]);
    expect(&pm, &out, 0);
    assert_eq!(out.lines(), ["1000", "/tmp", "bar"], "{out}");
    expect(&pm, &pm.podman(&["exec", "-d", "web", "sh", "-c", "sleep 0.2; touch /tmp/done"]), 0);
    wait_until("the detached exec's file", Duration::from_secs(10), || {
        pm.podman(&["exec", "web", "test", "-f", "/tmp/done"]).success()
    });
    let t0 = Instant::now();
    expect(&pm, &pm.podman(&["stop", "web"]), 0);
    assert!(t0.elapsed() < Duration::from_secs(8), "stop of a TERM-handling container took {:?}", t0.elapsed());
    assert_eq!(pm.inspect("web", "{{.State.ExitCode}}"), "0");
    wait_log(&pm, "web", "got-term");
    let kills = pm.calls_of("kill");
    assert!(kills.iter().any(|c| c.ends_with(&format!("{id} 15"))), "no kill with TERM:\n{}", pm.calls_text());
    assert!(!kills.iter().any(|c| c.ends_with(&format!("{id} 9"))), "TERM should have been enough:\n{}", pm.calls_text());
    pm.ok(&["rm", "web"]);
    pm.assert_clean();
}

#[test]
fn podman_stop_timeout_kills_term_ignoring_container() {
    let pm = Podman::new("podman_stop_timeout_kills_term_ignoring_container");
    let script = "trap '' TERM; echo ready; while :; do sleep 0.1; done";
    expect(&pm, &pm.run(&["-d", "--name", "stubborn", BUSYBOX, "sh", "-c", script]), 0);
    let id = pm.id_of("stubborn");
    wait_log(&pm, "stubborn", "ready");
    let t0 = Instant::now();
    expect(&pm, &pm.podman(&["stop", "-t", "1", "stubborn"]), 0);
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(8), "stop -t 1 took {took:?}");
    assert_eq!(pm.inspect("stubborn", "{{.State.ExitCode}}"), "137");
    let kills: Vec<String> = pm.calls_of("kill").into_iter().filter(|c| c.contains(&id)).collect();
    assert!(
        kills.len() == 2 && kills[0].ends_with(" 15") && kills[1].ends_with(" 9"),
        "expected kill TERM then KILL:\n{}",
        pm.calls_text()
    );
    pm.ok(&["rm", "stubborn"]);
    pm.assert_clean();
}

#[test]
fn podman_tty_run_and_exec() {
    let pm = Podman::new("podman_tty_run_and_exec");
    let out = pm.run(&["--rm", "-t", BUSYBOX, "sh", "-c", "tty; echo done; sleep 1"]);
    expect(&pm, &out, 0);
    assert_eq!(out.lines(), ["/dev/pts/0", "done"], "{out}");
    assert!(pm.calls_of("create")[0].contains("--console-socket "), "{}", pm.calls_text());
    expect(&pm, &pm.run(&["-d", "--name", "t", BUSYBOX, "sleep", "1000"]), 0);
    let out = pm.podman(&["exec", "-t", "t", "sh", "-c", "tty; echo in-pty; sleep 1"]);
    expect(&pm, &out, 0);
    let lines = out.lines();
    assert!(lines.len() == 2 && lines[0].starts_with("/dev/pts/") && lines[1] == "in-pty", "{out}");
    let exec = pm.calls_of("exec").pop().expect("an exec call");
    assert!(exec.contains("--tty") && exec.contains("--console-socket "), "{exec}");
    pm.ok(&["rm", "-f", "-t", "0", "t"]);
    pm.assert_clean();
}

#[test]
fn podman_run_stdin_and_preserved_fds() {
    let pm = Podman::new("podman_run_stdin_and_preserved_fds");
    let input = pm.dir.join("host/in.txt");
    std::fs::write(&input, "hello-stdin\n").unwrap();
    let fd3 = pm.dir.join("host/fd3.txt");
    std::fs::write(&fd3, "from-fd-3\n").unwrap();
    let cg = pm.cgroup_parent.clone();
    fn run<'a>(cg: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["run", "--rm", "--cgroup-parent", cg, "--network", "none"];
        a.extend_from_slice(extra);
        a
    }
    let out =
        pm.podman_via_shell(&format!("exec 0<'{}'", input.display()), &run(&cg, &["-i", BUSYBOX, "sh", "-c", "cat; echo done"]));
    expect(&pm, &out, 0);
    assert_eq!(out.lines(), ["hello-stdin", "done"], "{out}");
    let out = pm.podman_via_shell(
        &format!("exec 3<'{}'", fd3.display()),
        &run(&cg, &["--preserve-fds", "1", BUSYBOX, "sh", "-c", "cat <&3"]),
    );
    expect(&pm, &out, 0);
    assert_eq!(out.stdout, "from-fd-3\n", "{out}");
    assert!(pm.calls_of("create").last().unwrap().contains("--preserve-fds 1"), "{}", pm.calls_text());
    expect(&pm, &pm.run(&["-d", "--name", "i", BUSYBOX, "sleep", "1000"]), 0);
    let out = pm.podman_via_shell(&format!("exec 0<'{}'", input.display()), &["exec", "-i", "i", "cat"]);
    expect(&pm, &out, 0);
    assert_eq!(out.stdout, "hello-stdin\n", "{out}");
    let out = pm.sh("i", "echo out; echo err >&2");
    expect(&pm, &out, 0);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("out\n", "err\n"), "{out}");
    pm.ok(&["rm", "-f", "-t", "0", "i"]);
    pm.assert_clean();
}

#[test]
fn podman_pod_containers_share_infra_namespaces() {
    let pm = Podman::new("podman_pod_containers_share_infra_namespaces");
    let pod_id = pm.pod_create("p", &[]);
    for c in ["a", "b"] {
        expect(&pm, &pm.podman(&["run", "-d", "--pod", "p", "--name", c, BUSYBOX, "sleep", "1000"]), 0);
    }
    let infra = pm.ok(&["pod", "inspect", "p", "--format", "{{.InfraContainerID}}"]);
    let infra_pid = pm.pid_of(&infra);
    for c in ["a", "b"] {
        let pid = pm.pid_of(c);
        for ns in ["net", "ipc", "uts"] {
            let want = ns_id(&format!("/proc/{infra_pid}/ns/{ns}"));
            assert_eq!(ns_id(&format!("/proc/{pid}/ns/{ns}")), want, "{c}'s {ns} namespace (host view)");
            let out = pm.podman(&["exec", c, "readlink", &format!("/proc/self/ns/{ns}")]);
            expect(&pm, &out, 0);
            assert_eq!(out.stdout.trim(), want, "{c}'s exec in the {ns} namespace");
        }
        for ns in ["pid", "mnt"] {
            assert_ne!(ns_id(&format!("/proc/{pid}/ns/{ns}")), ns_id(&format!("/proc/{infra_pid}/ns/{ns}")), "{c} {ns}");
        }
        assert_eq!(pm.ok(&["exec", c, "hostname"]), "p");
        // Containers of the pod sit in the pod's cgroup, under the test's parent.
        let id = pm.id_of(c);
        let cg = cgroups_path(&pm, &id);
        assert_eq!(cg, format!("{}/{pod_id}/libpod-{id}", pm.cgroup_parent));
        assert!(cgroups::procs("pids", &cg).contains(&pid), "{c} is not in {cg}");
    }
    let ps = pm.ok(&["pod", "ps", "--format", "{{.Name}} {{.Status}} {{.NumberOfContainers}}"]);
    assert_eq!(ps, "p Running 3");
    pm.ok(&["pod", "rm", "-f", "p"]);
    assert_eq!(pm.ok(&["pod", "ps", "-q"]), "");
    pm.assert_clean();
}

const KUBE_YAML: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: kp
spec:
  hostname: kphost
  restartPolicy: Never
  containers:
  - name: one
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo one-started; exec sleep 1000"]
  - name: two
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo two-started; exec sleep 1000"]
"#;

#[test]
fn podman_kube_play_pod_and_down() {
    let pm = Podman::new("podman_kube_play_pod_and_down");
    pm.ensure_pause_image();
    let yaml = pm.dir.join("host/pod.yaml");
    std::fs::write(&yaml, KUBE_YAML).unwrap();
    let yaml = yaml.to_string_lossy().into_owned();
    let out = pm.podman(&["kube", "play", "--network", "none", &yaml]);
    expect(&pm, &out, 0);
    let pod_id = out.stdout.lines().skip_while(|l| !l.starts_with("Pod:")).nth(1).unwrap_or("").trim().to_string();
    pm.record_pod(&pod_id);
    assert_eq!(pm.ok(&["pod", "inspect", "kp", "--format", "{{.Id}}"]), pod_id, "{out}");
    assert_eq!(pm.calls_of("create").len(), 3, "infra and two containers:\n{}", pm.calls_text());
    wait_log(&pm, "kp-one", "one-started");
    wait_log(&pm, "kp-two", "two-started");
    let infra = pm.ok(&["pod", "inspect", "kp", "--format", "{{.InfraContainerID}}"]);
    let infra_pid = pm.pid_of(&infra);
    for c in ["kp-one", "kp-two"] {
        assert_eq!(pm.inspect(c, "{{.State.Status}}"), "running");
        let pid = pm.pid_of(c);
        for ns in ["net", "ipc", "uts"] {
            let want = ns_id(&format!("/proc/{infra_pid}/ns/{ns}"));
            assert_eq!(ns_id(&format!("/proc/{pid}/ns/{ns}")), want, "{c}'s {ns} namespace");
            assert_eq!(pm.ok(&["exec", c, "readlink", &format!("/proc/self/ns/{ns}")]), want, "{c}'s exec, {ns}");
        }
        assert_eq!(pm.ok(&["exec", c, "hostname"]), "kphost");
    }
    expect(&pm, &pm.podman(&["kube", "down", &yaml]), 0);
    assert_eq!(pm.ok(&["pod", "ps", "-q"]), "");
    pm.assert_clean();
}

/// With `--cgroup-manager cgroupfs` podman must not pass `--systemd-cgroup`, and writes a cgroupfs path;
/// its default seccomp profile reaches the container (`Seccomp: 2`, filter mode), for exec'd processes too.
#[test]
fn podman_cgroupfs_driver_and_default_seccomp() {
    let pm = Podman::new("podman_cgroupfs_driver_and_default_seccomp");
    expect(&pm, &pm.run(&["-d", "--name", "s", BUSYBOX, "sleep", "1000"]), 0);
    let id = pm.id_of("s");
    let pid = pm.pid_of("s");
    assert!(!pm.calls().iter().any(|c| c.contains("--systemd-cgroup")), "{}", pm.calls_text());
    let cg = cgroups_path(&pm, &id);
    assert_eq!(cg, format!("{}/libpod-{id}", pm.cgroup_parent));
    assert!(cgroups::procs("pids", &cg).contains(&pid), "container init {pid} is not in {cg}");
    let cfg = pm.config_json(&id);
    assert_eq!(cfg.pointer("/linux/seccomp/defaultAction").and_then(|v| v.as_str()), Some("SCMP_ACT_ERRNO"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(status_field(&status, "Seccomp"), "2", "the container's init");
    assert_eq!(status_field(&pm.ok(&["exec", "s", "cat", "/proc/self/status"]), "Seccomp"), "2", "an exec'd process");
    let out = pm.run(&["--rm", "--security-opt", "seccomp=unconfined", BUSYBOX, "cat", "/proc/self/status"]);
    expect(&pm, &out, 0);
    assert_eq!(status_field(&out.stdout, "Seccomp"), "0");
    pm.ok(&["rm", "-f", "-t", "0", "s"]);
    pm.assert_clean();
}

#[test]
fn podman_run_resource_limits_and_update() {
    let pm = Podman::new("podman_run_resource_limits_and_update");
    let out = pm.run(&["-d", "--name", "r", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", BUSYBOX, "sleep", "1000"]);
    expect(&pm, &out, 0);
    let cg = cgroups_path(&pm, &pm.id_of("r"));
    assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes", "memory.max"), "67108864");
    assert_eq!(cg_read("pids", &cg, "pids.max", "pids.max"), "50");
    let quota = |v: &str| if cgroups::is_v2() { format!("{v} 100000") } else { v.to_string() };
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us", "cpu.max"), quota("50000"));
    expect(&pm, &pm.podman(&["update", "--memory", "100m", "--cpus", "0.25", "r"]), 0);
    assert!(pm.calls_of("update").iter().any(|c| c.contains("--resources")), "{}", pm.calls_text());
    assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes", "memory.max"), "104857600");
    assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us", "cpu.max"), quota("25000"));
    pm.ok(&["rm", "-f", "-t", "0", "r"]);
    pm.assert_clean();
}

#[test]
fn podman_pause_unpause() {
    let pm = Podman::new("podman_pause_unpause");
    expect(&pm, &pm.run(&["-d", "--name", "z", BUSYBOX, "sleep", "1000"]), 0);
    let cg = cgroups_path(&pm, &pm.id_of("z"));
    let frozen = || {
        if cgroups::is_v2() {
            cgroups::read("freezer", &cg, "cgroup.freeze").unwrap_or_default() == "1"
        } else {
            cgroups::read("freezer", &cg, "freezer.state").unwrap_or_default() == "FROZEN"
        }
    };
    expect(&pm, &pm.podman(&["pause", "z"]), 0);
    assert_eq!(pm.inspect("z", "{{.State.Status}}"), "paused");
    assert!(frozen(), "the container's cgroup is not frozen");
    expect(&pm, &pm.podman(&["unpause", "z"]), 0);
    assert_eq!(pm.inspect("z", "{{.State.Status}}"), "running");
    assert!(!frozen(), "the container's cgroup is still frozen");
    assert_eq!((pm.calls_of("pause").len(), pm.calls_of("resume").len()), (1, 1), "{}", pm.calls_text());
    pm.ok(&["rm", "-f", "-t", "0", "z"]);
    pm.assert_clean();
}

/// `podman create` + `init` (the runtime's create) + `start -a`, `restart`; the runtime's `state`
/// carries what podman reads from it (`status`, `pid`) and the bundle podman gave.
#[test]
fn podman_create_init_start_restart() {
    let pm = Podman::new("podman_create_init_start_restart");
    let id = pm.create(&["--name", "once", BUSYBOX, "echo", "created-ran"]).ok().stdout.trim().to_string();
    assert!(pm.created_ids().is_empty(), "podman create must not call the runtime yet");
    pm.ok(&["init", "once"]);
    assert_eq!(pm.created_ids(), std::slice::from_ref(&id));
    assert_eq!(pm.inspect("once", "{{.State.Status}}"), "initialized");
    let st = pm.runtime_state(&id);
    expect(&pm, &st, 0);
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap_or_else(|e| panic!("state is not JSON: {e}: {st}"));
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{st}");
    let bundle = st["bundle"].as_str().unwrap_or("");
    assert!(bundle.ends_with(&format!("{id}/userdata")), "{st}");
    let out = pm.podman(&["start", "-a", "once"]);
    expect(&pm, &out, 0);
    assert_eq!(out.stdout.trim(), "created-ran", "{out}");
    pm.ok(&["rm", "once"]);

    expect(&pm, &pm.run(&["-d", "--name", "rs", BUSYBOX, "sleep", "1000"]), 0);
    let rs = pm.id_of("rs");
    let pid1 = pm.pid_of("rs");
    expect(&pm, &pm.podman(&["restart", "-t", "0", "rs"]), 0);
    let pid2 = pm.pid_of("rs");
    assert_ne!(pid1, pid2, "restart kept the old process");
    let st: serde_json::Value = serde_json::from_str(&pm.runtime_state(&rs).stdout).expect("state JSON");
    assert_eq!((st["status"].as_str(), st["pid"].as_i64()), (Some("running"), Some(pid2 as i64)), "{st}");
    pm.ok(&["rm", "-f", "-t", "0", "rs"]);
    pm.assert_clean();
}

/// Mounts of other types than bind that carry a propagation option (podman writes `rprivate` into
/// every tmpfs and overlay volume it asks for).
#[test]
fn podman_run_tmpfs_and_overlay_mounts() {
    let pm = Podman::new("podman_run_tmpfs_and_overlay_mounts");
    let out = pm.run(&[
        "--rm",
        "--tmpfs",
        "/scratch",
        BUSYBOX,
        "sh",
        "-c",
        "grep ' /scratch ' /proc/self/mountinfo; echo x > /scratch/f && cat /scratch/f",
    ]);
    expect(&pm, &out, 0);
    assert!(out.stdout.contains(" - tmpfs ") && out.stdout.ends_with("x\n"), "{out}");
    let out = pm.run(&["--rm", "--mount", "type=tmpfs,destination=/m", BUSYBOX, "sh", "-c", "touch /m/f && echo ok"]);
    expect(&pm, &out, 0);
    assert_eq!(out.stdout, "ok\n");
    let out = pm.run(&["--rm", "--tmpfs", "/x:size=1m,mode=1777", BUSYBOX, "sh", "-c", "stat -c %a /x; df -k /x | tail -1"]);
    expect(&pm, &out, 0);
    let lines = out.lines();
    assert!(lines.len() == 2 && lines[0] == "1777" && lines[1].split_whitespace().nth(1) == Some("1024"), "{out}");
    // An overlay volume (`:O`): the host dir is the lower layer, writes stay in the container.
    let vol = pm.dir.join("host/vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "lower\n").unwrap();
    let spec = format!("{}:/v:O", vol.display());
    let out = pm.run(&["--rm", "-v", &spec, BUSYBOX, "sh", "-c", "cat /v/f; echo upper > /v/new && cat /v/new"]);
    expect(&pm, &out, 0);
    assert_eq!(out.stdout, "lower\nupper\n");
    assert!(!vol.join("new").exists(), "a write to an overlay volume reached the host dir");
    pm.assert_clean();
}

/// `--read-only`: the root is read-only, and podman mounts tmpfs (`tmpcopyup`) on /run, /tmp, /var/tmp.
#[test]
fn podman_run_read_only_rootfs() {
    let pm = Podman::new("podman_run_read_only_rootfs");
    let out = pm.run(&["--rm", "--read-only", BUSYBOX, "sh", "-c", "touch /x"]);
    expect(&pm, &out, 1);
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    let out = pm.run(&["--rm", "--read-only", BUSYBOX, "sh", "-c", "touch /tmp/x /run/x /var/tmp/x && echo writable"]);
    expect(&pm, &out, 0);
    assert_eq!(out.stdout, "writable\n");
    pm.assert_clean();
}

#[test]
fn podman_run_privileged() {
    let pm = Podman::new("podman_run_privileged");
    let out = pm.run(&["--rm", "--privileged", BUSYBOX, "cat", "/proc/self/status"]);
    expect(&pm, &out, 0);
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(status_field(&out.stdout, "CapEff"), status_field(&mine, "CapEff"), "all of podman's capabilities");
    assert_eq!(status_field(&out.stdout, "Seccomp"), "0");
    pm.assert_clean();
}

#[test]
fn podman_run_process_options() {
    let pm = Podman::new("podman_run_process_options");
    let run = |args: &[&str]| -> String {
        let mut a = vec!["--rm"];
        a.extend_from_slice(args);
        let out = pm.run(&a);
        expect(&pm, &out, 0);
        out.stdout
    };
    assert!(run(&["--init", BUSYBOX, "cat", "/proc/1/cmdline"]).starts_with("/run/podman-init\0"), "--init");
    let out = run(&["--hostname", "hh", "--env", "A=b", "--workdir", "/tmp", BUSYBOX, "sh", "-c", "hostname; echo $A; pwd"]);
    assert_eq!(out, "hh\nb\n/tmp\n");
    assert_eq!(status_field(&run(&["--cap-drop", "all", BUSYBOX, "cat", "/proc/self/status"]), "CapEff"), "0000000000000000");
    let caps = status_field(&run(&["--cap-add", "SYS_ADMIN", BUSYBOX, "cat", "/proc/self/status"]), "CapEff");
    assert!(u64::from_str_radix(&caps, 16).unwrap() & (1 << 21) != 0, "CAP_SYS_ADMIN missing from {caps}");
    let nnp = run(&["--security-opt", "no-new-privileges", BUSYBOX, "cat", "/proc/self/status"]);
    assert_eq!(status_field(&nnp, "NoNewPrivs"), "1");
    assert_eq!(run(&["--user", "1000:1000", "--group-add", "1001", BUSYBOX, "id", "-G"]), "1000 1001\n");
    let limits = run(&[
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "nproc=512:512",
        BUSYBOX,
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -u",
    ]);
    assert_eq!(limits, "100\n200\n512\n");
    assert!(run(&["--shm-size", "1m", BUSYBOX, "df", "-k", "/dev/shm"]).contains(" 1024 "), "--shm-size 1m");
    assert_eq!(run(&["--device", "/dev/null:/dev/xnull", BUSYBOX, "sh", "-c", "echo x > /dev/xnull && echo wrote"]), "wrote\n");
    assert_eq!(run(&["--oom-score-adj", "100", BUSYBOX, "cat", "/proc/self/oom_score_adj"]), "100\n");
    pm.assert_clean();
}

#[test]
fn podman_run_namespace_options() {
    let pm = Podman::new("podman_run_namespace_options");
    let run = |args: &[&str]| -> String {
        let mut a = vec!["--rm"];
        a.extend_from_slice(args);
        let out = pm.run(&a);
        expect(&pm, &out, 0);
        out.stdout.trim().to_string()
    };
    let map = run(&["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", BUSYBOX, "cat", "/proc/self/uid_map"]);
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    let host_init = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(run(&["--pid", "host", BUSYBOX, "cat", "/proc/1/comm"]), host_init.trim());
    let host_name = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    assert_eq!(run(&["--uts", "host", BUSYBOX, "hostname"]), host_name);
    assert_eq!(run(&["--ipc", "host", BUSYBOX, "readlink", "/proc/self/ns/ipc"]), ns_id("/proc/self/ns/ipc"));
    assert_ne!(run(&[BUSYBOX, "readlink", "/proc/self/ns/net"]), ns_id("/proc/self/ns/net"), "--network none: own netns");
    let cgroup = run(&["--cgroupns", "private", BUSYBOX, "cat", "/proc/self/cgroup"]);
    assert!(cgroup.lines().all(|l| l.ends_with(":/")), "a private cgroup namespace shows its cgroup as /: {cgroup}");
    // The opposite of the host's value: a new network namespace may start with the host's.
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read the host's ip_forward");
    let want = if host_forward.trim() == "1" { "0" } else { "1" };
    let sysctl = format!("net.ipv4.ip_forward={want}");
    assert_eq!(run(&["--sysctl", &sysctl, BUSYBOX, "cat", "/proc/sys/net/ipv4/ip_forward"]), want);
    pm.assert_clean();
}

/// A runtime podman does not know by name gets no `--log-format=json`: errors travel as plain stderr
/// through conmon, and podman still maps them to exit codes.
#[test]
fn podman_runtime_unknown_to_podman_gets_plain_errors() {
    let pm = Podman::with_runtime_name("podman_runtime_unknown_to_podman_gets_plain_errors", "ocirt");
    let out = pm.run(&["--rm", BUSYBOX, "sh", "-c", "echo ok; exit 4"]);
    expect(&pm, &out, 4);
    assert_eq!(out.stdout, "ok\n");
    assert!(!pm.calls_of("create")[0].contains("--log-format"), "{}", pm.calls_text());
    let out = pm.run(&["--rm", BUSYBOX, "/nonexistent"]);
    expect(&pm, &out, 127);
    expect(&pm, &pm.run(&["-d", "--name", "x", BUSYBOX, "sleep", "1000"]), 0);
    expect(&pm, &pm.podman(&["exec", "x", "/nonexistent"]), 127);
    expect(&pm, &pm.sh("x", "exit 6"), 6);
    pm.ok(&["rm", "-f", "-t", "0", "x"]);
    pm.assert_clean();
}

/// `podman info` runs `RUNTIME --version` and shows its output.
#[test]
fn podman_info_reports_runtime_version() {
    let pm = Podman::new("podman_info_reports_runtime_version");
    let shown = pm.ok(&["info", "--format", "{{.Host.OCIRuntime.Version}}"]);
    let own = std::process::Command::new(&pm.rt.path).arg("--version").output().unwrap();
    assert_eq!(shown, String::from_utf8_lossy(&own.stdout).trim());
    assert!(pm.calls().iter().any(|c| c == "--version"), "{}", pm.calls_text());
}

/// `no_pivot_root = true` in containers.conf: conmon passes `create --no-pivot`.
#[test]
fn podman_no_pivot_root_config() {
    let pm = Podman::with_config("podman_no_pivot_root_config", &harness::runtime_name(), "no_pivot_root = true");
    let out = pm.run(&["--rm", BUSYBOX, "sh", "-c", "echo in-container; cat /etc/hostname"]);
    expect(&pm, &out, 0);
    assert_eq!(out.lines().first().map(String::as_str), Some("in-container"), "{out}");
    assert!(pm.calls_of("create")[0].contains("--no-pivot"), "{}", pm.calls_text());
    pm.assert_clean();
}

/// An OCI hook from podman's hooks dir: podman writes it into config.json, the runtime runs the
/// runtime-namespace stages with the container's state on stdin (podman runs poststop itself).
#[test]
fn podman_oci_hooks_from_hooks_dir() {
    let pm = Podman::new("podman_oci_hooks_from_hooks_dir");
    let out_file = pm.dir.join("host/hooks.out");
    let hook = serde_json::json!({
        "version": "1.0.0",
        "hook": {
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("printf '%s %s\\n' \"$0\" \"$(cat)\" >> '{}'", out_file.display()), "HOOK"],
        },
        "when": {"always": true},
        "stages": ["createRuntime", "prestart", "poststart"],
    });
    // The stage name travels as $0: one hook file per stage.
    for stage in ["createRuntime", "prestart", "poststart"] {
        let mut h = hook.clone();
        h["hook"]["args"][3] = serde_json::json!(stage);
        h["stages"] = serde_json::json!([stage]);
        std::fs::write(pm.dir.join(format!("hooks/{stage}.json")), h.to_string()).unwrap();
    }
    expect(&pm, &pm.run(&["-d", "--name", "h", BUSYBOX, "sleep", "1000"]), 0);
    let id = pm.id_of("h");
    let pid = pm.pid_of("h");
    let text = roci_integration::wait::wait_file(&out_file, Duration::from_secs(10), |s| s.lines().count() >= 3);
    let mut seen = Vec::new();
    for line in text.lines() {
        let (stage, state) = line.split_once(' ').unwrap_or_else(|| panic!("hook output line {line:?}"));
        let state: serde_json::Value =
            serde_json::from_str(state).unwrap_or_else(|e| panic!("{stage}: state is not JSON: {e}: {state}"));
        assert_eq!(state["id"], id.as_str(), "{stage}: {state}");
        assert_eq!(state["pid"].as_i64(), Some(pid as i64), "{stage}: {state}");
        assert!(state["bundle"].as_str().is_some_and(|b| b.ends_with("/userdata")), "{stage}: {state}");
        // poststart: the spec's lifecycle has the program running by then; runc 1.1 still says "created".
        // prestart and createRuntime: runc 1.1 says "creating", roci (and crun) "created", as the
        // runtime-tools suite expects (tests/oci/hooks.rs).
        let want: &[&str] = if stage == "poststart" { &["running", "created"] } else { &["creating", "created"] };
        assert!(want.contains(&state["status"].as_str().unwrap_or("")), "{stage}: {state}");
        seen.push(stage.to_string());
    }
    // The runtime spec's lifecycle order (steps 3, 4 and 8 of create and start).
    assert_eq!(seen, ["prestart", "createRuntime", "poststart"].map(String::from).to_vec(), "hook order");
    pm.ok(&["rm", "-f", "-t", "0", "h"]);
    pm.assert_clean();
}
