//! Docker (Debian's docker.io 20.10) in front of the runtime under test.
//!
//! The tests that run at the same time share one `dockerd` ([`daemon::Daemon::shared`]), started by
//! the first with everything of its own in a temp dir and a network namespace (see [`daemon`]), the
//! runtime under test registered with `--add-runtime` and made the default; every `docker run` also
//! names it with `--runtime`. The containerd runc shim (`containerd-shim-runc-v2`) calls the runtime as
//! it calls runc: `create --bundle --pid-file --console-socket`, `start`, `exec --process -d`,
//! `kill`, `delete`, `pause`, `resume`, `update --resources -`, `ps --format json`, `state`.
//!
//! "The host's loopback" of the bridge test: dockerd's host is the test's network namespace, and its
//! loopback holds 127.0.0.1. A container on the default bridge reaches that namespace at the bridge's
//! gateway address (docker0); a server bound to the gateway address answers directly, and a server
//! bound to 127.0.0.1 only is reached through a DNAT of gateway:PORT to 127.0.0.1:PORT with
//! `route_localnet` on docker0 (what a host does to expose a loopback-only service to its containers).
//! The test checks both.
//!
//! `docker run --privileged` is not tested: on this host the test itself lacks capabilities that Docker
//! asks for (CAP_SYS_RESOURCE...), so runc fails it too ("unable to apply caps: operation not permitted").

mod daemon;

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use daemon::{Ctr, Daemon, NetnsServer};

use crate::status_field;
use roci_integration::console::{read_pty, write_pty};
use roci_integration::{cgroups, runtime, wait_for, Output};

/// Read a cgroup file of a container: `v1` on a v1 or hybrid host, `v2` on a pure v2 host.
#[track_caller]
fn cg_read(controller: &str, rel: &str, v1: &str, v2: &str) -> String {
    let file = if cgroups::is_v2() { v2 } else { v1 };
    cgroups::read(controller, rel, file).unwrap_or_else(|| {
        panic!("cannot read {file} of cgroup {rel} ({controller}): {}", cgroups::dir(controller, rel).display())
    })
}

/// Panics unless the command exited with `code`.
#[track_caller]
fn expect_code(d: &Daemon, out: &Output, code: i32) {
    assert!(!out.timed_out, "timed out: {out}\n{}", d.log_tail());
    assert_eq!(out.code, code, "unexpected exit code: {out}\n--- dockerd.log (end) ---\n{}", d.log_tail());
}

/// `docker ARGS` with a pty as its stdin, stdout and stderr (as a person at a terminal runs it). For
/// each `(wait_for, then_write)` step: read until `wait_for` appears after what earlier steps matched,
/// then write `then_write`. Returns the exit code and everything the terminal showed.
fn in_pty(d: &Daemon, args: &[&str], steps: &[(&str, &str)]) -> (i32, String) {
    let ws = nix::pty::Winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
    let master: OwnedFd = pty.master;
    let mut cmd = d.cli();
    cmd.args(args)
        .stdin(Stdio::from(pty.slave.try_clone().expect("dup pty")))
        .stdout(Stdio::from(pty.slave.try_clone().expect("dup pty")))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().expect("spawn docker");
    // Only the child holds the slave now: when it exits, reads on the master end with EIO.
    drop(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut shown = String::new();
    let mut pos = 0;
    for (want, write) in steps {
        loop {
            if let Some(i) = shown[pos..].find(want) {
                pos += i + want.len();
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = read_pty(&master, left.min(Duration::from_secs(1)), |s| !s.is_empty());
            shown.push_str(&chunk);
            if Instant::now() >= deadline || (chunk.is_empty() && child.try_wait().ok().flatten().is_some()) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`docker {}`: never showed {want:?}; the terminal showed {shown:?}\n{}", args.join(" "), d.log_tail());
            }
        }
        write_pty(&master, write.as_bytes());
    }
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait docker") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`docker {}` did not exit; the terminal showed {shown:?}", args.join(" "));
        }
        shown.push_str(&read_pty(&master, Duration::from_millis(100), |_| false));
        std::thread::sleep(Duration::from_millis(10));
    };
    shown.push_str(&read_pty(&master, Duration::from_millis(200), |_| false));
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    (code, shown)
}

// ---------------------------------------------------------------------------------------------------
// Attached runs, exit codes, the runtime's own view

#[test]
fn docker_run_attached_output_and_exit_codes() {
    let d = Daemon::shared();
    let name = d.name("attached");
    let out = d.docker(&[
        "run",
        "--name",
        &name,
        "--pull",
        "never",
        "--runtime",
        &d.runtime_name,
        "busybox",
        "sh",
        "-c",
        "echo hi; hostname; id",
    ]);
    let ctr = Ctr { d: &d, name };
    d.expect_ok(out.clone());
    let id = ctr.id();
    assert_eq!(
        out.lines(),
        vec!["hi".to_string(), id[..12].to_string(), "uid=0(root) gid=0(root) groups=0(root)".to_string()],
        "{out}"
    );
    assert_eq!(ctr.inspect("{{.HostConfig.Runtime}} {{.State.ExitCode}}"), format!("{} 0", d.runtime_name));
    drop(ctr);

    // The container's exit status is docker run's.
    expect_code(&d, &d.run(&[], &["sh", "-c", "exit 3"]), 3);
    expect_code(&d, &d.run(&[], &["sh", "-c", "echo out; echo err >&2; exit 42"]), 42);
    // (An init killed by a signal gives 128 + N: see docker_wait_and_kill_signal. `kill -9 $$` would
    // not do: the kernel ignores a signal sent to a PID namespace's init from inside it.)
    // The runtime's error reaches the user, and docker maps it to 126/127 by its wording.
    let out = d.run(&[], &["nosuchcmd"]);
    expect_code(&d, &out, 127);
    assert!(out.stderr.contains("executable file not found"), "{out}");
    let out = d.run(&[], &["/etc/passwd"]);
    expect_code(&d, &out, 126);
    assert!(out.stderr.contains("permission denied"), "{out}");
}

/// `docker run IMAGE /missing/program` exits 127 as with runc: Docker's CLI maps the create error to
/// 127 only when it contains "no such file or directory" (lower case, Go's wording of ENOENT) or
/// "executable file not found"; anything else is 125.
#[test]
fn docker_run_missing_program_exits_127() {
    let d = Daemon::shared();
    let out = d.run(&[], &["/nonexistent"]);
    expect_code(&d, &out, 127);
    assert!(out.stderr.contains("/nonexistent"), "{out}");
}

#[test]
fn docker_detached_logs_exec_top_and_runtime_state() {
    let d = Daemon::shared();
    let c = d.run_detached("detached", &[], &["sh", "-c", "echo started; echo to-stderr >&2; exec sleep 1000"]);
    c.wait_log("started");
    assert!(c.logs().contains("to-stderr"));
    assert_eq!(c.inspect("{{.State.Status}} {{.HostConfig.Runtime}}"), format!("running {}", d.runtime_name));

    // The runtime under test owns the container: its own `state` (in the root the shim gives it) names
    // the pid Docker reports.
    let id = c.id();
    let pid = c.pid();
    let root = d.runtime_root().unwrap_or_else(|| panic!("no runtime root under {}", d.exec_root.display()));
    let state = std::process::Command::new(&runtime().path).arg("--root").arg(&root).args(["state", &id]).output().unwrap();
    assert!(state.status.success(), "{} state: {}", runtime().path.display(), String::from_utf8_lossy(&state.stderr));
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("state JSON");
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["pid"].as_i64(), Some(pid as i64), "{state}");

    // exec: output, exit code, user, working dir, environment, stdin.
    let out = d.expect_ok(c.exec(&[], &["sh", "-c", "echo exec-ok; cat /proc/1/cmdline | tr '\\0' ' '"]));
    assert_eq!(out.lines(), vec!["exec-ok".to_string(), "sleep 1000".to_string()], "{out}");
    expect_code(&d, &c.exec(&[], &["sh", "-c", "exit 5"]), 5);
    let out =
        d.expect_ok(c.exec(&["-u", "1000:1000", "-w", "/tmp", "-e", "FOO=bar"], &["sh", "-c", "id -u; id -g; pwd; echo $FOO"]));
    assert_eq!(out.lines(), vec!["1000", "1000", "/tmp", "bar"], "{out}");
    let out = d.expect_ok(d.docker_stdin(&["exec", "-i", &c.name, "sh", "-c", "tr a-z A-Z"], "piped in\n"));
    assert_eq!(out.stdout, "PIPED IN\n", "{out}");
    // A detached exec runs in the container while the CLI returns.
    d.expect_ok(c.exec(&["-d"], &["sh", "-c", "echo bg > /tmp/bg; sleep 1000"]));
    daemon::until("the detached exec to write /tmp/bg", || c.exec(&[], &["cat", "/tmp/bg"]).stdout.trim() == "bg");
    // An exec of a missing program fails with the runtime's message, exit 126 (as runc).
    let out = c.exec(&[], &["nosuchcmd"]);
    expect_code(&d, &out, 126);
    assert!(format!("{}{}", out.stdout, out.stderr).contains("executable file not found"), "{out}");

    // top: the shim asks the runtime (`ps --format json`) for the container's pids.
    let out = d.expect_ok(d.docker(&["top", &c.name]));
    assert!(out.stdout.contains("sleep 1000"), "{out}");
    assert!(out.stdout.contains(&pid.to_string()), "{out}");
}

#[test]
fn docker_exec_it_through_a_pty() {
    let d = Daemon::shared();
    let c = d.run_detached("exec-it", &[], &["sleep", "1000"]);
    let (code, shown) = in_pty(
        &d,
        &["exec", "-it", &c.name, "sh"],
        &[("# ", "echo $((6*7))-ok; tty\n"), ("42-ok", ""), ("/dev/pts/", "exit 3\n")],
    );
    assert_eq!(code, 3, "terminal: {shown:?}");
    // `-t` without `-i`: a terminal, no input.
    let out = d.expect_ok(c.exec(&["-t"], &["sh", "-c", "tty; test -t 1 && echo is-a-tty; sleep 1"]));
    assert!(out.stdout.contains("/dev/pts/") && out.stdout.contains("is-a-tty"), "{out}");
}

#[test]
fn docker_run_it_through_a_pty() {
    let d = Daemon::shared();
    let rt = d.runtime_name.clone();
    let (code, shown) = in_pty(
        &d,
        &["run", "-it", "--rm", "--pull", "never", "--runtime", &rt, "busybox", "sh"],
        &[("# ", "echo $((6*7))-ok; tty; echo $TERM\n"), ("42-ok", ""), ("xterm", "exit 4\n")],
    );
    assert_eq!(code, 4, "terminal: {shown:?}");
    assert!(shown.contains("/dev/pts/0"), "terminal: {shown:?}");
}

// ---------------------------------------------------------------------------------------------------
// Lifecycle: stop, restart, pause

#[test]
fn docker_stop_sigterm_trapped_exits_0() {
    let d = Daemon::shared();
    let c = d.run_detached(
        "stop-trap",
        &[],
        &["sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"],
    );
    c.wait_log("ready");
    let t = Instant::now();
    d.expect_ok(d.docker(&["stop", "-t", "20", &c.name]));
    assert!(t.elapsed() < Duration::from_secs(10), "stop took {:?}: SIGTERM was not delivered", t.elapsed());
    assert_eq!(c.inspect("{{.State.Status}} {{.State.ExitCode}}"), "exited 0");
    assert!(c.logs().contains("got-term"));
}

#[test]
fn docker_stop_sigterm_ignored_killed_after_timeout() {
    let d = Daemon::shared();
    let c = d.run_detached("stop-ignore", &[], &["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]);
    c.wait_log("ready");
    let pid = c.pid();
    let t = Instant::now();
    d.expect_ok(d.docker(&["stop", "-t", "1", &c.name]));
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "stop returned after {took:?}, before its 1 s timeout");
    assert!(took < Duration::from_secs(15), "stop took {took:?}");
    assert_eq!(c.inspect("{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}"), "exited 137 false");
    assert!(roci_integration::is_dead(pid), "pid {pid} survived docker stop");
}

#[test]
fn docker_restart_new_pid_still_works() {
    let d = Daemon::shared();
    let c = d.run_detached("restart", &[], &["sh", "-c", "echo boot; trap 'exit 0' TERM; while true; do sleep 0.1; done"]);
    c.wait_log("boot");
    let pid1 = c.pid();
    d.expect_ok(d.docker(&["restart", "-t", "10", &c.name]));
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
    let pid2 = c.pid();
    assert_ne!(pid1, pid2, "restart kept the old pid");
    assert!(roci_integration::is_dead(pid1), "old init {pid1} still alive");
    daemon::until("two boots in the log", || c.logs().matches("boot").count() == 2);
    let out = d.expect_ok(c.exec(&[], &["sh", "-c", "echo alive; cat /proc/1/cmdline | head -c 2"]));
    assert_eq!(out.lines(), vec!["alive", "sh"], "{out}");
    // And once more, from the stopped state.
    d.expect_ok(d.docker(&["stop", &c.name]));
    d.expect_ok(d.docker(&["start", &c.name]));
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
    d.expect_ok(c.exec(&[], &["true"]));
}

/// `--restart on-failure:2`: Docker deletes the exited container's task and creates it again under
/// the same id, twice.
#[test]
fn docker_restart_policy_recreates_the_container() {
    let d = Daemon::shared();
    let c = d.run_detached("restart-policy", &["--restart", "on-failure:2"], &["sh", "-c", "echo run; exit 1"]);
    let mut last = String::new();
    let done = wait_for(Duration::from_secs(60), || {
        last = c.inspect("{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}");
        last == "2 exited 1"
    });
    assert!(done, "restart count, status, exit code: {last}\n{}", d.log_tail());
    assert_eq!(c.logs().matches("run").count(), 3, "{}", c.logs());
}

#[test]
fn docker_pause_unpause() {
    let d = Daemon::shared();
    let dir = d.host.join(d.name("pause"));
    std::fs::create_dir_all(&dir).unwrap();
    let vol = format!("{}:/data", dir.display());
    // A counter the host can read while the container is frozen (rename: never a half-written file).
    let c = d.run_detached(
        "pause",
        &["-v", &vol],
        &["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /data/c.new; mv /data/c.new /data/c; sleep 0.05; done"],
    );
    let counter = || std::fs::read_to_string(dir.join("c")).ok().and_then(|s| s.trim().parse::<u64>().ok());
    daemon::until("the counter to start", || counter().is_some_and(|n| n > 2));
    let cg = c.cgroup();

    d.expect_ok(d.docker(&["pause", &c.name]));
    assert_eq!(c.inspect("{{.State.Paused}} {{.State.Status}}"), "true paused");
    let frozen = if cgroups::is_v2() {
        cg_read("pids", &cg, "", "cgroup.events").contains("frozen 1")
    } else {
        cg_read("freezer", &cg, "freezer.state", "") == "FROZEN"
    };
    assert!(frozen, "the container's cgroup {cg} is not frozen");
    let a = counter();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(), a, "the counter moved while the container was paused");
    // Docker refuses exec into a paused container; stop of a paused one works (below).
    c.exec(&[], &["true"]).fails();

    d.expect_ok(d.docker(&["unpause", &c.name]));
    assert_eq!(c.inspect("{{.State.Paused}} {{.State.Status}}"), "false running");
    daemon::until("the counter to move again", || counter() > a);

    d.expect_ok(d.docker(&["pause", &c.name]));
    d.expect_ok(d.docker(&["stop", "-t", "1", &c.name]));
    assert_eq!(c.inspect("{{.State.Status}}"), "exited");
}

#[test]
fn docker_wait_and_kill_signal() {
    let d = Daemon::shared();
    let c =
        d.run_detached("kill", &[], &["sh", "-c", "trap 'echo got-hup; exit 7' HUP; echo ready; while true; do sleep 0.1; done"]);
    c.wait_log("ready");
    d.expect_ok(d.docker(&["kill", "-s", "HUP", &c.name]));
    let out = d.expect_ok(d.docker(&["wait", &c.name]));
    assert_eq!(out.stdout.trim(), "7", "{out}");
    assert!(c.logs().contains("got-hup"));
    let c = d.run_detached("kill9", &[], &["sleep", "1000"]);
    d.expect_ok(d.docker(&["kill", &c.name]));
    assert_eq!(d.expect_ok(d.docker(&["wait", &c.name])).stdout.trim(), "137");
}

// ---------------------------------------------------------------------------------------------------
// Resources

#[test]
fn docker_memory_limit_and_oom() {
    let d = Daemon::shared();
    let c = d.run_detached("memory", &["--memory", "64m"], &["sleep", "1000"]);
    assert_eq!(c.inspect("{{.HostConfig.Memory}}"), "67108864");
    let cg = c.cgroup();
    let host = cg_read("memory", &cg, "memory.limit_in_bytes", "memory.max");
    assert_eq!(host, "67108864", "memory limit in the host's view of {cg}");
    let out = d.expect_ok(c.exec(
        &[],
        &["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"],
    ));
    assert_eq!(out.stdout.trim(), "67108864", "memory limit seen inside: {out}");
    drop(c);

    // Over the limit: the kernel's OOM killer ends the container's biggest process; Docker says so.
    // (The shim watches for OOM events only once the container has started: the first `sleep 1`
    // keeps an OOM at the very first instant from being missed. It drops an event whose cgroup is
    // already gone when it gets to it: the subshell is what the OOM killer ends, and the container
    // lives on for a second with its exit code, so a fast `delete` cannot race the event.)
    let name = d.name("oom");
    let out = d.docker(&[
        "run",
        "--name",
        &name,
        "--pull",
        "never",
        "--runtime",
        &d.runtime_name,
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "sleep 1; (x=$(head -c 100m /dev/zero | tr '\\0' a); echo survived); st=$?; sleep 1; exit $st",
    ]);
    let c = Ctr { d: &d, name };
    expect_code(&d, &out, 137);
    assert!(!out.stdout.contains("survived"), "{out}");
    assert_eq!(c.inspect("{{.State.OOMKilled}} {{.State.ExitCode}}"), "true 137");
}

#[test]
fn docker_cpus_limit() {
    let d = Daemon::shared();
    let c = d.run_detached("cpus", &["--cpus", "0.5", "--cpu-shares", "512"], &["sleep", "1000"]);
    let cg = c.cgroup();
    if cgroups::is_v2() {
        assert_eq!(cg_read("cpu", &cg, "", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us", ""), "50000");
        assert_eq!(cg_read("cpu", &cg, "cpu.cfs_period_us", ""), "100000");
        assert_eq!(cg_read("cpu", &cg, "cpu.shares", ""), "512");
        let out =
            d.expect_ok(c.exec(&[], &["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"]));
        assert_eq!(out.lines(), vec!["50000", "100000"], "{out}");
    }
}

#[test]
fn docker_pids_limit_stops_a_fork_bomb() {
    let d = Daemon::shared();
    let c = d.run_detached(
        "pids",
        &["--pids-limit", "20"],
        // In a subshell: busybox sh gives up (exits) at the first fork that fails.
        &["sh", "-c", "(for i in $(seq 1 60); do sleep 1000 & done); echo spawned; exec sleep 1000"],
    );
    c.wait_log("spawned");
    let cg = c.cgroup();
    assert_eq!(cg_read("pids", &cg, "pids.max", "pids.max"), "20");
    let current: u64 = cg_read("pids", &cg, "pids.current", "pids.current").parse().unwrap();
    assert!(current <= 20, "pids.current {current} above the limit");
    assert!(current >= 15, "pids.current {current}: the loop should have filled the cgroup");
    let events = cg_read("pids", &cg, "pids.events", "pids.events");
    let refused: u64 = events.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(refused > 0, "no fork was refused: pids.events {events:?}");
    assert!(c.logs().contains("can't fork"), "{}", c.logs());
}

/// `docker update` on a running container: the shim passes the new resources to the runtime's
/// `update --resources -`.
#[test]
fn docker_update_resources() {
    let d = Daemon::shared();
    let c = d.run_detached("update", &["--memory", "64m", "--pids-limit", "50"], &["sleep", "1000"]);
    d.expect_ok(d.docker(&["update", "--memory", "48m", "--pids-limit", "30", "--cpus", "1.5", &c.name]));
    let cg = c.cgroup();
    assert_eq!(cg_read("memory", &cg, "memory.limit_in_bytes", "memory.max"), (48u64 << 20).to_string());
    assert_eq!(cg_read("pids", &cg, "pids.max", "pids.max"), "30");
    if cgroups::is_v2() {
        assert_eq!(cg_read("cpu", &cg, "", "cpu.max"), "150000 100000");
    } else {
        assert_eq!(cg_read("cpu", &cg, "cpu.cfs_quota_us", ""), "150000");
    }
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
}

// ---------------------------------------------------------------------------------------------------
// Filesystem, users, capabilities, security

#[test]
fn docker_read_only_rootfs() {
    let d = Daemon::shared();
    let dir = d.host.join(d.name("ro-vol"));
    std::fs::create_dir_all(&dir).unwrap();
    let vol = format!("{}:/data", dir.display());
    let out = d.run(
        &["--read-only", "-v", &vol],
        &[
            "sh",
            "-c",
            "touch /x 2>&1; touch /tmp/x 2>&1; echo v > /data/ok && echo data-rw; echo s > /dev/shm/ok && echo shm-rw; grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1",
        ],
    );
    d.expect_ok(out.clone());
    assert_eq!(
        out.lines(),
        vec!["touch: /x: Read-only file system", "touch: /tmp/x: Read-only file system", "data-rw", "shm-rw", "ro"],
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("ok")).unwrap(), "v\n");
}

/// `--tmpfs` and `--mount type=tmpfs`: Docker gives the mount the option `rprivate`, so the runtime
/// must change the propagation of the tmpfs it has just mounted (not of the directory under it).
#[test]
fn docker_tmpfs_mounts() {
    let d = Daemon::shared();
    let out = d.run(
        &["--read-only", "--tmpfs", "/tmp", "--tmpfs", "/run:size=1m", "--mount", "type=tmpfs,destination=/scratch,tmpfs-size=2m"],
        &[
            "sh",
            "-c",
            "touch /tmp/x && echo tmp-rw; df -k /run /scratch | tail -n 2 | tr -s ' ' | cut -d' ' -f2; grep ' /run ' /proc/mounts | cut -d' ' -f3",
        ],
    );
    d.expect_ok(out.clone());
    assert_eq!(out.lines(), vec!["tmp-rw", "1024", "2048", "tmpfs"], "{out}");
}

#[test]
fn docker_cap_drop_all_add_net_bind_service() {
    let d = Daemon::shared();
    let out = d.run(
        &["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"],
        &["sh", "-c", "cat /proc/self/status; touch /f; chown 1000 /f 2>&1 || echo chown-denied"],
    );
    d.expect_ok(out.clone());
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&out.stdout, set), "0000000000000400", "{set}: {out}");
    }
    assert!(out.stdout.contains("chown-denied"), "{out}");
    // Docker's default set, for comparison: chown works.
    let out = d.expect_ok(d.run(&[], &["sh", "-c", "grep CapEff /proc/self/status; touch /f; chown 1000 /f && echo chown-ok"]));
    assert!(out.stdout.contains("00000000a80425fb") && out.stdout.contains("chown-ok"), "{out}");
}

#[test]
fn docker_user() {
    let d = Daemon::shared();
    let out = d.expect_ok(d.run(&["--user", "1000:1000"], &["sh", "-c", "id; grep CapEff /proc/self/status"]));
    assert_eq!(out.lines()[0], "uid=1000(test) gid=1000(test) groups=1000(test)", "{out}");
    assert!(out.lines()[1].ends_with("0000000000000000"), "{out}");
    // By name: Docker resolves the uid, gid and supplementary groups from the image's /etc files.
    let out = d.expect_ok(d.run(&["--user", "test", "--group-add", "65534"], &["id"]));
    assert_eq!(out.stdout.trim(), "uid=1000(test) gid=1000(test) groups=1000(test),1001(extra),65534(nogroup)", "{out}");
    // Files a non-root container writes to a volume belong to it on the host.
    let dir = d.host.join(d.name("user-vol"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(1000), Some(1000)).unwrap();
    let vol = format!("{}:/data", dir.display());
    d.expect_ok(d.run(&["--user", "1000:1000", "-v", &vol], &["touch", "/data/mine"]));
    let meta = std::fs::metadata(dir.join("mine")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
}

#[test]
fn docker_bind_volumes() {
    let d = Daemon::shared();
    let dir = d.host.join(d.name("vol"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("from-host"), "hello from the host\n").unwrap();
    let rw = format!("{}:/data", dir.display());
    let out = d.expect_ok(d.run(&["-v", &rw], &["sh", "-c", "cat /data/from-host; echo written > /data/from-container"]));
    assert_eq!(out.stdout, "hello from the host\n", "{out}");
    assert_eq!(std::fs::read_to_string(dir.join("from-container")).unwrap(), "written\n");
    let ro = format!("{}:/data:ro", dir.display());
    let out = d.run(&["-v", &ro], &["sh", "-c", "cat /data/from-host && echo x > /data/nope"]);
    expect_code(&d, &out, 1);
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!dir.join("nope").exists());
    // A named volume: Docker's local driver, a bind from under the data root.
    let vol = d.name("named");
    let arg = format!("{vol}:/v");
    d.expect_ok(d.run(&["-v", &arg], &["sh", "-c", "echo kept > /v/f"]));
    let out = d.expect_ok(d.run(&["-v", &arg], &["cat", "/v/f"]));
    assert_eq!(out.stdout, "kept\n");
    d.expect_ok(d.docker(&["volume", "rm", &vol]));
}

#[test]
fn docker_seccomp_default_profile_and_unconfined() {
    let d = Daemon::shared();
    // Docker sends its default profile in config.json: the container starts under it.
    let out = d.expect_ok(d.run(&[], &["cat", "/proc/self/status"]));
    assert_eq!(status_field(&out.stdout, "Seccomp"), "2", "{out}");
    let out = d.expect_ok(d.run(&["--security-opt", "seccomp=unconfined"], &["cat", "/proc/self/status"]));
    assert_eq!(status_field(&out.stdout, "Seccomp"), "0", "{out}");
    // And exec'd processes get it too.
    let c = d.run_detached("seccomp", &[], &["sleep", "1000"]);
    let out = d.expect_ok(c.exec(&[], &["cat", "/proc/self/status"]));
    assert_eq!(status_field(&out.stdout, "Seccomp"), "2", "{out}");
    let out = d.expect_ok(d.run(&["--security-opt", "no-new-privileges"], &["cat", "/proc/self/status"]));
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "1", "{out}");
}

#[test]
fn docker_run_options() {
    let d = Daemon::shared();
    let out = d.expect_ok(d.run(
        &[
            "--hostname",
            "box",
            "--dns",
            "10.0.0.53",
            "--add-host",
            "other:10.1.2.3",
            "-e",
            "GREETING=hello",
            "-w",
            "/work",
            "--ulimit",
            "nofile=512:512",
            "--sysctl",
            "kernel.msgmax=4096",
            "--shm-size",
            "8m",
            "--cpuset-cpus",
            "0",
            "--oom-score-adj",
            "500",
            "--device",
            "/dev/null:/dev/xnull",
        ],
        &[
            "sh",
            "-c",
            "hostname; grep nameserver /etc/resolv.conf; grep other /etc/hosts | tr -s '\\t ' ' '; echo $GREETING; pwd; \
             ulimit -n; cat /proc/sys/kernel/msgmax; df -k /dev/shm | tail -n 1 | tr -s ' ' | cut -d' ' -f2; \
             cat /proc/self/oom_score_adj; echo x > /dev/xnull && echo dev-ok",
        ],
    ));
    assert_eq!(
        out.lines(),
        vec!["box", "nameserver 10.0.0.53", "10.1.2.3 other", "hello", "/work", "512", "4096", "8192", "500", "dev-ok"],
        "{out}"
    );
}

#[test]
fn docker_init() {
    let d = Daemon::shared();
    let out = d.expect_ok(d.run(&["--init"], &["sh", "-c", "cat /proc/1/comm; echo $$"]));
    let lines = out.lines();
    assert_eq!(lines[0], "docker-init", "{out}");
    assert_ne!(lines[1], "1", "{out}");
}

#[test]
fn docker_shared_namespaces() {
    let d = Daemon::shared();
    let a = d.run_detached("ns-owner", &["--ipc", "shareable"], &["sleep", "1000"]);
    let ns = |out: &Output| out.lines();
    let theirs = d.expect_ok(a.exec(&[], &["sh", "-c", "for n in net pid ipc; do readlink /proc/1/ns/$n; done"]));
    let net = format!("container:{}", a.name);
    let out = d.expect_ok(d.run(
        &["--network", &net, "--pid", &net, "--ipc", &net],
        &["sh", "-c", "for n in net pid ipc; do readlink /proc/self/ns/$n; done; ps -o comm | grep -c sleep"],
    ));
    let mine = ns(&out);
    assert_eq!(mine[..3], ns(&theirs)[..], "{out}");
    assert_eq!(mine[3], "1", "the owner's sleep is not visible: {out}");
}

/// `--network host --pid host --ipc host --uts host`: the container joins dockerd's namespaces (its
/// network namespace is the test's own).
#[test]
fn docker_host_namespaces() {
    let d = Daemon::shared();
    let out = d.expect_ok(d.run(
        &["--network", "host", "--pid", "host", "--ipc", "host", "--uts", "host"],
        &["sh", "-c", "for n in net pid ipc uts; do readlink /proc/self/ns/$n; done; hostname"],
    ));
    let lines = out.lines();
    use std::os::unix::fs::MetadataExt;
    let netns = std::fs::metadata(d.netns_path()).unwrap().ino();
    assert_eq!(lines[0], format!("net:[{netns}]"), "{out}");
    for (i, n) in ["pid", "ipc", "uts"].iter().enumerate() {
        assert_eq!(lines[i + 1], roci_integration::ns_id(&format!("/proc/self/ns/{n}")), "{out}");
    }
    assert_eq!(lines[4], nix::unistd::gethostname().unwrap().to_string_lossy(), "{out}");
    // And a private cgroup namespace on request.
    let out = d.expect_ok(d.run(&["--cgroupns", "private"], &["cat", "/proc/self/cgroup"]));
    assert!(out.lines().iter().all(|l| l.ends_with(":/")), "{out}");
}

// ---------------------------------------------------------------------------------------------------
// Networks

#[test]
fn docker_network_none() {
    let d = Daemon::shared();
    let out = d.expect_ok(d.run(&["--network", "none"], &["ls", "/sys/class/net"]));
    assert_eq!(out.lines(), vec!["lo"], "{out}");
    let out = d.expect_ok(d.run(&["--network", "none"], &["ip", "-o", "link"]));
    assert_eq!(out.lines().len(), 1, "{out}");
    assert!(out.stdout.contains("lo:") && out.stdout.contains("UP"), "{out}");
}

#[test]
fn docker_default_bridge_reaches_the_test_netns() {
    let d = Daemon::shared();
    let gw = d.bridge_gateway();
    let netns = d.netns_path();
    let on_gateway = NetnsServer::start(&netns, gw, "hello from the gateway\n");
    let on_loopback = NetnsServer::start(&netns, std::net::Ipv4Addr::LOCALHOST, "hello from the loopback\n");
    // Expose the loopback-only server to the bridge as gateway:PORT.
    let port = on_loopback.port.to_string();
    let to = format!("127.0.0.1:{port}");
    let gws = gw.to_string();
    d.expect_ok(d.in_netns(&[
        "iptables",
        "-t",
        "nat",
        "-I",
        "PREROUTING",
        "-i",
        "docker0",
        "-d",
        &gws,
        "-p",
        "tcp",
        "--dport",
        &port,
        "-j",
        "DNAT",
        "--to-destination",
        &to,
    ]));
    d.expect_ok(d.in_netns(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/docker0/route_localnet"]));

    let script = format!(
        "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; ip route | grep default | cut -d' ' -f3; \
         nc -w 5 {gw} {} </dev/null; nc -w 5 {gw} {port} </dev/null",
        on_gateway.port
    );
    let out = d.expect_ok(d.run(&[], &["sh", "-c", &script]));
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{out}");
    let (addr, prefix) = lines[0].split_once('/').unwrap_or_else(|| panic!("no eth0 address: {out}"));
    let addr: std::net::Ipv4Addr = addr.parse().unwrap();
    assert_eq!(prefix, "16", "{out}");
    assert_eq!(addr.octets()[..2], gw.octets()[..2], "eth0 {addr} is not on the bridge of {gw}: {out}");
    assert_eq!(lines[1], gws, "default route: {out}");
    assert_eq!(lines[2], "hello from the gateway", "{out}");
    assert_eq!(lines[3], "hello from the loopback", "{out}");
    assert_eq!((on_gateway.served(), on_loopback.served()), (1, 1));
}

// ---------------------------------------------------------------------------------------------------
// The daemon

#[test]
fn docker_info_and_version_show_the_runtime() {
    let d = Daemon::shared();
    let out = d.expect_ok(d.docker(&["info", "--format", "{{json .Runtimes}}|{{.DefaultRuntime}}"]));
    let (runtimes, default) = out.stdout.trim().split_once('|').unwrap();
    let runtimes: serde_json::Value = serde_json::from_str(runtimes).unwrap();
    assert_eq!(runtimes[&d.runtime_name]["path"], runtime().path.to_string_lossy().as_ref(), "{out}");
    assert_eq!(default, d.runtime_name);
    // `docker version` runs the default runtime's `--version` and shows its name and version.
    let out = d.expect_ok(d.docker(&["version", "--format", "{{json .Server.Components}}"]));
    let components: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let ours = components
        .as_array()
        .and_then(|a| a.iter().find(|c| c["Name"] == d.runtime_name.as_str()))
        .unwrap_or_else(|| panic!("no component {} in {out}", d.runtime_name));
    let version = ours["Version"].as_str().unwrap_or("");
    assert!(!version.is_empty() && runtime().version.contains(version), "{ours} vs {}", runtime().version);
}

/// A daemon of the test's own, torn down at the end: nothing of it may be left.
#[test]
fn docker_teardown_leaves_nothing() {
    let d = Daemon::start();
    let c = d.run_detached("left-running", &[], &["sleep", "1000"]);
    let pid = c.pid();
    let name = c.name.clone();
    std::mem::forget(c); // left running on purpose: teardown must deal with it
    let procs = d.processes();
    assert!(procs.contains(&pid), "container {name} pid {pid} not among the daemon's processes {procs:?}");
    assert!(procs.len() >= 4, "dockerd, containerd, a shim and the container: {procs:?}");
    let dockerd = d.dockerd_pid().unwrap();
    let (dir, netns, parent) = (d.dir.clone(), d.netns_path(), d.cgroup_parent.clone());
    let docker_before: HashSet<_> = cgroups::existing_dirs("/docker").into_iter().collect();
    assert!(!roci_integration::container::mounts_below(&dir).is_empty(), "no overlay mount under {}", dir.display());

    let left = d.teardown();
    assert!(left.is_empty(), "teardown left {left:?}");
    drop(d); // a second teardown finds nothing to do

    for p in procs.iter().copied().chain([dockerd]) {
        assert!(wait_for(Duration::from_secs(5), || roci_integration::is_dead(p)), "process {p} survived the teardown");
    }
    assert!(roci_integration::container::mounts_below(&dir).is_empty());
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!netns.exists(), "{} still exists", netns.display());
    assert!(cgroups::existing_dirs(&parent).is_empty(), "cgroup {parent} left");
    let docker_after: HashSet<_> = cgroups::existing_dirs("/docker").into_iter().collect();
    assert!(docker_after.is_subset(&docker_before), "dockerd made /docker cgroups: {docker_after:?}");
}

// ---------------------------------------------------------------------------------------------------
// What the containerd shim asks of the runtime besides the lifecycle

/// When a container shares another's PID namespace (`--pid container:X`), its init's exit does not
/// end the processes it started; the shim then runs `RT kill --all ID 9` on the stopped container so
/// they go with it (runc signals every process left in the container's cgroup).
#[test]
fn docker_shared_pid_namespace_init_exit_kills_the_rest() {
    let d = Daemon::shared();
    let owner = d.run_detached("pidns-owner", &[], &["sleep", "1000"]);
    let pidns = format!("container:{}", owner.name);
    let guest = d.run_detached("pidns-guest", &["--pid", &pidns], &["sh", "-c", "sleep 1000 & echo started; sleep 1; exit 0"]);
    let cg = guest.cgroup();
    guest.wait_log("started");
    let left = || -> Vec<i32> { cgroups::procs("pids", &cg).into_iter().filter(|p| !roci_integration::is_dead(*p)).collect() };
    let out = d.expect_ok(d.docker(&["wait", &guest.name]));
    assert_eq!(out.stdout.trim(), "0", "{out}");
    let mut pids = left();
    wait_for(Duration::from_secs(10), || {
        pids = left();
        pids.is_empty()
    });
    assert!(pids.is_empty(), "processes {pids:?} of the exited container {} still alive in {cg}", guest.name);
    // Docker deletes the task at once, and the runtime's `delete` kills what is left: the shim's own
    // `kill --all` shows only in its log (relayed through dockerd's).
    let id = guest.id();
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("failed to kill init's children") && l.contains(&id)).collect();
    assert!(failed.is_empty(), "the shim's `kill --all {id} 9` after the init exited failed: {failed:#?}");
    // The owner is untouched.
    assert_eq!(owner.inspect("{{.State.Status}}"), "running");
}

/// After a container is gone, containerd's cleanup of its shim (`containerd-shim-runc-v2 delete`) runs
/// `RT --root R --log BUNDLE/log.json --log-format json delete --force ID` once more. runc answers 0
/// for a container that no longer exists when `--force` is given; anything else makes containerd log
/// "failed to remove runc container" for every container Docker runs. (runc itself fails that cleanup
/// now and then, with exit status 255, so dockerd's log is not the check: the command is.)
#[test]
fn docker_shim_cleanup_delete_force_of_a_gone_container() {
    let d = Daemon::shared();
    let cidfile = d.host.join(d.name("cidfile"));
    let cid = cidfile.to_string_lossy().into_owned();
    d.expect_ok(d.run(&["--cidfile", &cid], &["true"]));
    let id = std::fs::read_to_string(&cidfile).expect("cidfile").trim().to_string();
    let root = d.runtime_root().expect("runtime root");
    assert!(!root.join(&id).exists(), "the runtime still has state for {id} after docker run --rm");
    let log = d.host.join(format!("{id}-log.json"));
    let mut cmd = std::process::Command::new(&runtime().path);
    cmd.arg("--root").arg(&root).arg("--log").arg(&log).args(["--log-format", "json", "delete", "--force", &id]);
    let out =
        roci_integration::exec::run_captured(cmd, &d.host.join(format!("{id}-delete")), Some(&log), Duration::from_secs(20));
    assert!(out.success(), "delete --force of a container that is gone must succeed, as runc's: {out}");
    // Without --force it is an error, for both.
    let mut cmd = std::process::Command::new(&runtime().path);
    cmd.arg("--root").arg(&root).arg("--log").arg(&log).args(["--log-format", "json", "delete", &id]);
    let out =
        roci_integration::exec::run_captured(cmd, &d.host.join(format!("{id}-delete2")), Some(&log), Duration::from_secs(20));
    out.fails();
}
