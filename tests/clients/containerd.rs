//! containerd in front of the runtime under test.
//!
//! Debian's containerd 1.6 and `ctr`, with the runc v2 shim (`io.containerd.runc.v2`) running the runtime
//! under test in runc's place: `ctr run --runc-binary RT` sets the shim's `BinaryName` option, and the
//! shim calls `RT --root <runc-root>/<ns> --log <bundle>/log.json --log-format json <verb> ...` for
//! create, start, exec, kill, pause, resume, ps, delete (and `state`). Each test starts its own containerd
//! (see [`fixture`]) and checks at the end that the runtime, the shims and containerd left nothing behind.
//!
//! What the shim does itself, so the runtime's part there is only to have put the processes in the cgroup
//! the spec names: `ctr task metrics` reads the cgroup of the task's pid (v1 files on a hybrid host, v2
//! on a unified one), not `RT events --stats`; OOM events come from the shim's own eventfd on
//! `memory.oom_control` (v1) or `memory.events` (v2). The metrics test compares both with the runtime's
//! `events --stats`.
//!
//! Where the shim reads the runtime's words: a failed `create`/`exec`/`delete` is reported with the last
//! `"level":"error"` line of the JSON log; `kill` and `delete` errors are classified by the text of the
//! runtime's stderr ("container not running" → the process already finished; "does not exist" → no
//! such container), so the runtime must print its error on stderr even when `--log` names a file, as
//! runc does.

mod fixture;

use std::time::Duration;

use roci_integration::{cgroups, wait_until};
use serde_json::Value;

use fixture::{Containerd, NAMESPACE};

/// Keeps a container running, silently.
const SLEEP: &[&str] = &["sleep", "100000"];

fn json(text: &str, what: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"))
}

#[test]
fn containerd_run_attached_output_and_exit_code() {
    let ctd = Containerd::start();
    let id = ctd.id("attached");
    let out = ctd.run(&id, &["--rm"], &["sh", "-c", "echo hi; hostname"]);
    out.ok();
    // ctr's spec gives the container its own UTS namespace without a hostname: it keeps the host's.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read hostname");
    assert_eq!(out.lines(), ["hi", host.trim()], "{out}");
    ctd.assert_container_gone(&id);

    let id = ctd.id("exit-code");
    let out = ctd.run(&id, &["--rm"], &["sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(out.code, 3, "ctr run must exit with the container's code: {out}");
    assert!(out.stderr.contains("to-stderr"), "the container's stderr reaches ctr's: {out}");
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_detached_task_exec_kill_delete() {
    let ctd = Containerd::start();
    let id = ctd.id("detached");
    let pid = ctd.run_detached(&id, &[], &["sh", "-c", "trap 'exit 42' TERM; while :; do usleep 20000; done"]);
    assert!(pid > 0, "ctr task ls shows no pid for {id}");
    // The task's pid is the container's init: in the cgroup ctr asked for, in a PID namespace of its own.
    assert!(
        cgroups::procs("memory", &ctd.cgroup(&id)).contains(&pid),
        "pid {pid} is not in the container's cgroup {}",
        ctd.cgroup(&id)
    );
    assert_ne!(
        roci_integration::ns_id(&format!("/proc/{pid}/ns/pid")),
        roci_integration::ns_id("/proc/self/ns/pid"),
        "the container shares the host's PID namespace"
    );

    let out = ctd.exec(&id, "x1", &[], &["sh", "-c", "echo from-exec; exit 5"]);
    assert_eq!(out.code, 5, "ctr task exec must exit with the process's code: {out}");
    assert_eq!(out.lines(), ["from-exec"], "{out}");
    let out = ctd.exec(&id, "x2", &["--cwd", "/etc"], &["pwd"]);
    assert_eq!(out.ok().lines(), ["/etc"], "{out}");

    // `ctr task ps` is the runtime's `ps --format json`.
    let ps = ctd.ctr(&["task", "ps", &id]);
    assert!(ps.ok().stdout.split_whitespace().any(|w| w == pid.to_string()), "ctr task ps does not list the init {pid}: {ps}");

    ctd.ctr(&["task", "kill", "-s", "SIGTERM", &id]).ok();
    ctd.wait_status(&id, "STOPPED");
    let del = ctd.delete(&id);
    assert!(del.stderr.contains("exit code 42"), "task delete should report the exit code 42 of the TERM trap: {del}");
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_stdin_reaches_the_process() {
    let ctd = Containerd::start();
    // Attached `ctr run`: ctr's stdin goes through the shim's FIFO to the container's init.
    let id = ctd.id("stdin-run");
    let argv = ctd.run_argv(&id, &["--rm"], &["sh", "-c", "read line; echo \"$line\" | tr a-z A-Z; exit 2"]);
    let out = ctd.ctr_with_stdin(&argv.iter().map(String::as_str).collect::<Vec<_>>(), "hello from stdin\n");
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(out.lines(), ["HELLO FROM STDIN"], "{out}");
    ctd.assert_container_gone(&id);
    // `ctr task exec` without a terminal: the same for an exec'd process.
    let id = ctd.id("stdin-exec");
    ctd.run_detached(&id, &[], SLEEP);
    let fifo = ctd.dir.join("fifo").to_string_lossy().into_owned();
    let out = ctd.ctr_with_stdin(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "e1", &id, "wc", "-l"], "1\n2\n3\n");
    assert_eq!(out.ok().lines(), ["3"], "{out}");
    ctd.kill_and_delete(&id);
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_exec_with_tty() {
    let ctd = Containerd::start();
    let id = ctd.id("exec-tty");
    ctd.run_detached(&id, &[], SLEEP);
    // A command on the terminal: the runtime hands the shim the pty master over --console-socket.
    let out = ctd.ctr_in_pty(&["task", "exec", "-t", "--exec-id", "t1", &id, "sh", "-c", "tty; sleep 1; exit 4"], "");
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stdout.contains("/dev/pts/"), "the exec'd process has no terminal: {out}");
    // An interactive shell driven through the terminal.
    let out = ctd.ctr_in_pty(&["task", "exec", "-t", "--exec-id", "t2", &id, "sh"], "echo piped-$((6*7))\nexit 6\n");
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stdout.contains("piped-42"), "the shell did not run what was typed: {out}");
    ctd.kill_and_delete(&id);
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_run_with_tty() {
    let ctd = Containerd::start();
    let id = ctd.id("run-tty");
    // The pause before exiting lets ctr copy the output out of the pty: with a process that exits at
    // once, ctr 1.6 loses it now and then under load (with any runtime).
    let argv = ctd.run_argv(&id, &["--rm", "-t"], &["sh", "-c", "tty; sleep 1; exit 7"]);
    let out = ctd.ctr_in_pty(&argv.iter().map(String::as_str).collect::<Vec<_>>(), "");
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stdout.contains("/dev/pts/0"), "the container's process has no terminal: {out}");
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_pause_resume() {
    let ctd = Containerd::start();
    let id = ctd.id("pause");
    let host = ctd.host_dir("out");
    let mount = format!("type=bind,src={},dst=/out,options=rbind:rw", host.display());
    ctd.run_detached(
        &id,
        &["--mount", &mount],
        &["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /out/n.tmp; mv /out/n.tmp /out/n; usleep 20000; done"],
    );
    let count = || std::fs::read_to_string(host.join("n")).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    wait_until("the counter to start", Duration::from_secs(10), || count() >= 3);

    ctd.ctr(&["task", "pause", &id]).ok();
    assert_eq!(ctd.task(&id).map(|t| t.1), Some("PAUSED".to_string()));
    let frozen = if cgroups::is_v2() {
        cgroups::read("freezer", &ctd.cgroup(&id), "cgroup.freeze").as_deref() == Some("1")
    } else {
        cgroups::read("freezer", &ctd.cgroup(&id), "freezer.state").as_deref() == Some("FROZEN")
    };
    assert!(frozen, "the container's cgroup is not frozen after ctr task pause");
    let before = count();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(), before, "the counter moved while the task was paused");
    // The shim refuses to exec into a paused task, whatever the runtime.
    ctd.exec(&id, "while-paused", &[], &["true"]).fails().says("paused");

    ctd.ctr(&["task", "resume", &id]).ok();
    assert_eq!(ctd.task(&id).map(|t| t.1), Some("RUNNING".to_string()));
    wait_until("the counter to move after resume", Duration::from_secs(10), || count() > before + 2);
    ctd.kill_and_delete(&id);
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_task_metrics() {
    let ctd = Containerd::start();
    let id = ctd.id("metrics");
    let limit: u64 = 64 << 20;
    ctd.run_detached(&id, &["--memory-limit", &limit.to_string()], &["sh", "-c", "sleep 100000 & wait"]);
    wait_until("two processes in the container", Duration::from_secs(10), || {
        cgroups::procs("memory", &ctd.cgroup(&id)).len() == 2
    });

    let table = ctd.ctr(&["task", "metrics", &id]);
    table.ok();
    for field in ["pids.current", "memory"] {
        assert!(table.stdout.contains(field), "ctr task metrics does not show {field}: {table}");
    }
    let out = ctd.ctr(&["task", "metrics", "--format", "json", &id]);
    let m = json(&out.ok().stdout, "ctr task metrics --format json");
    let n = |p: &str| m.pointer(p).and_then(Value::as_u64).unwrap_or_else(|| panic!("no {p} in the metrics: {m:#}"));
    assert_eq!(n("/pids/current"), 2, "{m:#}");
    if cgroups::is_v2() {
        assert_eq!(n("/memory/usage_limit"), limit, "{m:#}");
        assert!(n("/memory/usage") > 0, "{m:#}");
        assert!(n("/cpu/usage_usec") > 0, "{m:#}");
    } else {
        assert_eq!(n("/memory/usage/limit"), limit, "{m:#}");
        assert!(n("/memory/usage/usage") > 0, "{m:#}");
        assert!(n("/cpu/usage/total") > 0, "{m:#}");
    }

    // The runtime's own statistics of the same cgroup, as runc prints them.
    let ev = ctd.runtime_cmd(&["events", "--stats", &id]);
    let e = json(ev.ok().stdout.trim(), "events --stats");
    assert_eq!(e["type"], "stats", "{e:#}");
    assert_eq!(e["id"], id.as_str(), "{e:#}");
    assert_eq!(e.pointer("/data/pids/current").and_then(Value::as_u64), Some(2), "{e:#}");
    assert_eq!(e.pointer("/data/memory/usage/limit").and_then(Value::as_u64), Some(limit), "{e:#}");
    assert!(e.pointer("/data/cpu/usage/total").and_then(Value::as_u64).is_some_and(|t| t > 0), "{e:#}");

    ctd.kill_and_delete(&id);
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_oom_kill_reported_by_events() {
    let ctd = Containerd::start();
    let events = ctd.spawn_ctr(&["events"]);
    // `ctr events` says nothing when its subscription is in place: publish events until one shows up.
    let mut n = 0;
    wait_until("ctr events to subscribe", Duration::from_secs(10), || {
        n += 1;
        ctd.ctr(&["namespaces", "label", NAMESPACE, &format!("roci-probe={n}")]).ok();
        events.stdout_now().contains("/namespaces/update")
    });

    let id = ctd.id("oom");
    // dd becomes the init: its 64 MiB buffer cannot fit in 32 MiB, the kernel's OOM killer ends it.
    // It waits a moment first: the shim starts watching the task's OOM events only once the runtime's
    // `start` has returned, and an OOM before that is not reported (with any runtime).
    let out = ctd.run(
        &id,
        &["--rm", "--memory-limit", "33554432"],
        &["sh", "-c", "sleep 0.5; exec dd if=/dev/zero of=/dev/null bs=64M count=1"],
    );
    assert_eq!(out.code, 137, "the OOM-killed task should exit 137: {out}");
    let container = format!("\"container_id\":\"{id}\"");
    let mut text = String::new();
    let seen = roci_integration::wait_for(Duration::from_secs(10), || {
        text = events.stdout_now();
        let has =
            |topic: &str, extra: &str| text.lines().any(|l| l.contains(topic) && l.contains(&container) && l.contains(extra));
        has("/tasks/oom", "") && has("/tasks/exit", "\"exit_status\":137")
    });
    assert!(seen, "ctr events did not report /tasks/oom and /tasks/exit 137 for {id}:\n{text}\n{}", events.stderr_now());
    drop(events);
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_binary_name_option() {
    let ctd = Containerd::start();
    // `ctr run --runc-binary` is how ctr sets the runc shim's `BinaryName` option (containerd.runc.v1.Options);
    // the CRI plugin sets the same field from `[...containerd.runtimes.<name>.options] BinaryName`. The shim
    // keeps the options in the bundle's options.json.
    let id = ctd.id("binary-name");
    let pid = ctd.run_detached(&id, &["--runtime", "io.containerd.runc.v2"], SLEEP);
    let opts = json(&std::fs::read_to_string(ctd.bundle(&id).join("options.json")).expect("read options.json"), "options.json");
    assert_eq!(opts["binary_name"], ctd.rt.path.to_string_lossy().as_ref(), "{opts:#}");
    assert_eq!(opts["root"], ctd.runc_root.to_string_lossy().as_ref(), "{opts:#}");
    // The runtime under test is the one that made the task: its own state of the container is the task.
    let st = ctd.runtime_cmd(&["state", &id]);
    let st = json(&st.ok().stdout, "state");
    assert_eq!(st["status"], "running", "{st:#}");
    assert_eq!(st["pid"].as_i64(), Some(i64::from(pid)), "{st:#}");
    assert_eq!(st["bundle"], ctd.bundle(&id).to_string_lossy().as_ref(), "{st:#}");
    ctd.kill_and_delete(&id);
    ctd.assert_container_gone(&id);

    // A BinaryName that does not exist: the shim cannot run it, ctr says which, nothing is left.
    let id = ctd.id("no-binary");
    let mut argv = ctd.run_argv(&id, &["--rm"], &["true"]);
    let at = argv.iter().position(|a| a == "--runc-binary").expect("--runc-binary") + 1;
    argv[at] = "/nonexistent/oci-runtime".to_string();
    let out = ctd.ctr(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    out.fails().says("/nonexistent/oci-runtime");
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_runtime_errors_reach_ctr() {
    let ctd = Containerd::start();
    // The shim reports a failed create with the last error line of the runtime's JSON log.
    let id = ctd.id("missing-path");
    let out = ctd.run(&id, &["--rm"], &["/nonexistent"]);
    out.fails().says("OCI runtime create failed").says("/nonexistent").says("no such file or directory");
    ctd.assert_container_gone(&id);

    let id = ctd.id("missing-name");
    let out = ctd.run(&id, &["--rm"], &["nonexistent-command"]);
    out.fails().says("OCI runtime create failed").says("nonexistent-command").says("executable file not found");
    ctd.assert_container_gone(&id);

    let id = ctd.id("bad-mount");
    let missing = ctd.dir.join("missing-source");
    let mount = format!("type=bind,src={},dst=/x,options=rbind", missing.display());
    let out = ctd.run(&id, &["--rm", "--mount", &mount], &["true"]);
    out.fails().says("OCI runtime create failed").says(&missing.to_string_lossy()).says("no such file or directory");
    ctd.assert_container_gone(&id);

    // An exec of a missing program fails the same way, and the task carries on.
    let id = ctd.id("exec-missing");
    ctd.run_detached(&id, &[], SLEEP);
    let out = ctd.exec(&id, "x1", &[], &["/nonexistent"]);
    out.fails().says("/nonexistent").says("no such file or directory");
    assert_eq!(ctd.task(&id).map(|t| t.1), Some("RUNNING".to_string()));
    ctd.kill_and_delete(&id);
    ctd.assert_container_gone(&id);
    ctd.finish();
}

#[test]
fn containerd_exit_status_after_signal() {
    let ctd = Containerd::start();
    // An attached `ctr run` whose task is SIGKILLed from another ctr exits 128+9.
    let id = ctd.id("sigkill");
    let argv = ctd.run_argv(&id, &["--rm"], SLEEP);
    let mut attached = ctd.spawn_ctr(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    ctd.wait_status(&id, "RUNNING");
    ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    assert_eq!(attached.wait(Duration::from_secs(20)), 137, "{}", attached.stderr_now());
    ctd.assert_container_gone(&id);

    // An init that is not PID 1 of a namespace of its own (it joins the test's PID namespace) dies of
    // SIGTERM: 128+15.
    let id = ctd.id("sigterm");
    let pidns = format!("pid:/proc/{}/ns/pid", std::process::id());
    let argv = ctd.run_argv(&id, &["--rm", "--with-ns", &pidns], SLEEP);
    let mut attached = ctd.spawn_ctr(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    ctd.wait_status(&id, "RUNNING");
    ctd.ctr(&["task", "kill", "-s", "SIGTERM", &id]).ok();
    assert_eq!(attached.wait(Duration::from_secs(20)), 143, "{}", attached.stderr_now());
    ctd.assert_container_gone(&id);

    // Exec'd processes killed by a signal.
    let id = ctd.id("exec-signals");
    ctd.run_detached(&id, &[], SLEEP);
    let out = ctd.exec(&id, "term", &[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.code, 143, "{out}");
    let out = ctd.exec(&id, "kill", &[], &["sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.code, 137, "{out}");
    // PID 1 of its own namespace without a handler: SIGTERM is ignored (the kernel's rule), the task runs on.
    ctd.ctr(&["task", "kill", "-s", "SIGTERM", &id]).ok();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ctd.task(&id).map(|t| t.1), Some("RUNNING".to_string()));
    let del = ctd.kill_and_delete(&id);
    assert!(del.stderr.contains("exit code 137"), "{del}");
    ctd.assert_container_gone(&id);
    ctd.finish();
}

/// The shim classifies a failed `RT kill` by the runtime's stderr ("container not running"): killing a
/// task that already exited is "not found", which clients (docker stop, CRI StopContainer) treat as done.
#[test]
fn containerd_kill_of_exited_task_is_not_found() {
    let ctd = Containerd::start();
    let id = ctd.id("kill-exited");
    ctd.run_detached(&id, &[], SLEEP);
    ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    ctd.wait_status(&id, "STOPPED");
    let out = ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    out.fails().says("process already finished: not found");
    ctd.delete(&id);
    ctd.assert_container_gone(&id);
    ctd.finish();
}

/// The shim ignores an `RT delete` that fails with "does not exist" on stderr (the runtime no longer knows
/// the container, as after a checkpoint): `ctr task delete` must still succeed.
#[test]
fn containerd_task_delete_when_runtime_forgot_container() {
    let ctd = Containerd::start();
    let id = ctd.id("forgotten");
    ctd.run_detached(&id, &[], SLEEP);
    ctd.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    ctd.wait_status(&id, "STOPPED");
    ctd.runtime_cmd(&["delete", &id]).ok();
    let del = ctd.ctr(&["task", "delete", &id]);
    del.ok();
    ctd.ctr(&["containers", "delete", &id]).ok();
    ctd.assert_container_gone(&id);
    ctd.finish();
}

/// Docker and the CRI plugin name containers with 64 hex digits: the runtime's state paths get long.
#[test]
fn containerd_long_container_id() {
    let ctd = Containerd::start();
    let id = ctd.id(&"0123456789abcdef".repeat(4));
    let out = ctd.run(&id, &["--rm"], &["echo", "long-id"]);
    assert_eq!(out.ok().lines(), ["long-id"], "{out}");
    ctd.assert_container_gone(&id);
    ctd.finish();
}

/// The parts of ctr's spec that container images and clients commonly ask for.
#[test]
fn containerd_spec_options() {
    let ctd = Containerd::start();
    let status_field = |text: &str, name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let caps = |hex: &str| u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{hex}: {e}"));

    // containerd's default seccomp profile (hundreds of rules, several architectures) and no_new_privs.
    let id = ctd.id("seccomp");
    let out = ctd.run(&id, &["--rm", "--seccomp"], &["cat", "/proc/self/status"]);
    out.ok();
    assert_eq!(status_field(&out.stdout, "Seccomp"), "2", "{out}");
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "1", "{out}");
    ctd.assert_container_gone(&id);

    // A read-only root and an environment variable.
    let id = ctd.id("read-only");
    let out = ctd.run(&id, &["--rm", "--read-only", "--env", "FOO=bar"], &["sh", "-c", "echo $FOO; touch /x 2>&1; exit 0"]);
    out.ok();
    assert!(out.stdout.starts_with("bar\n"), "{out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    ctd.assert_container_gone(&id);

    // Privileged: every capability this test holds.
    let id = ctd.id("privileged");
    let out = ctd.run(&id, &["--rm", "--privileged"], &["cat", "/proc/self/status"]);
    out.ok();
    let mine = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    assert_eq!(caps(&status_field(&out.stdout, "CapEff")), caps(&status_field(&mine, "CapEff")), "{out}");
    ctd.assert_container_gone(&id);

    // Capabilities added to and dropped from ctr's default set.
    let id = ctd.id("caps");
    let out = ctd.run(&id, &["--rm", "--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_CHOWN"], &["cat", "/proc/self/status"]);
    out.ok();
    let eff = caps(&status_field(&out.stdout, "CapEff"));
    assert!(eff & (1 << 21) != 0, "CAP_SYS_ADMIN was not added: {out}");
    assert!(eff & 1 == 0, "CAP_CHOWN was not dropped: {out}");
    ctd.assert_container_gone(&id);
    ctd.finish();
}
