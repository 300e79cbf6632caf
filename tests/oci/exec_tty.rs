//! `exec` beyond the basics of exec.rs: a terminal (through `--console-socket`, or proxied by the runtime
//! in the foreground), a process from a `--process` file, `--preserve-fds`, `--cap`, `--no-new-privs`,
//! and the states it is allowed or refused in.

use std::process::Command;
use std::time::Duration;

use roci_integration::console::{read_pty, ConsoleSocket};
use roci_integration::{exec::default_timeout, Container};
use serde_json::json;

use crate::section;

const T: Duration = Duration::from_secs(10);

fn done(c: &Container) {
    c.delete_force().ok();
    c.assert_no_leaks();
}

// A new pty's window is 0x0 (no consoleSize for exec), where busybox's `stty size` prints an error: set a
// size through the terminal first, then read it back.
const TTY_SCRIPT: &str = "tty; stty -a | head -n 1; stty rows 30 cols 100; stty size; \
                          test -t 0 && test -t 1 && test -t 2 && echo all-tty; echo done; exit 3";

fn check_tty_output(text: &str) {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("/dev/pts/")), "a pty of the container's devpts: {text:?}");
    // (On a 0x0 window busybox's stty also prints an error about the size before the settings.)
    assert!(lines.iter().any(|l| l.starts_with("speed ")), "stty -a reads the terminal's settings: {text:?}");
    assert!(lines.contains(&"30 100"), "the window size set through the terminal: {text:?}");
    assert!(lines.contains(&"all-tty"), "stdin, stdout and stderr are the terminal: {text:?}");
    assert!(text.contains("\r\n"), "through a pty line discipline: {text:?}");
}

#[test]
fn exec_tty_console_socket() {
    let c = Container::running("exec_tty_sock", |_| {});
    let sock = ConsoleSocket::listen(&c.dir.join("console.sock"), T);
    let path = sock.path.to_string_lossy().into_owned();
    let pid_file = c.host_path("exec.pid");
    let out = c.invoke(&[
        "exec",
        "-d",
        "--tty",
        "--console-socket",
        &path,
        "--pid-file",
        pid_file.to_str().unwrap(),
        &c.id,
        "sh",
        "-c",
        TTY_SCRIPT,
    ]);
    out.ok();
    if let Ok(pid) = std::fs::read_to_string(&pid_file).unwrap_or_default().trim().parse() {
        c.record_pid(pid);
    }
    let master = sock.master();
    let text = read_pty(&master, T, |s| s.contains("done"));
    check_tty_output(&text);
    assert!(out.stdout.is_empty(), "the output went to the pty, not the runtime's stdout: {out}");
    drop(master);
    done(&c);
}

#[test]
fn exec_tty_console_socket_foreground() {
    let c = Container::running("exec_tty_sock_fg", |_| {});
    let sock = ConsoleSocket::listen(&c.dir.join("console.sock"), T);
    let path = sock.path.to_string_lossy().into_owned();
    if c.rt.is_runc() {
        // runc 1.1 takes a console socket only with --detach: "cannot use console socket if runc will not
        // detach or allocate tty". roci also takes it in the foreground, where it waits for the process
        // and returns its exit code while the caller holds the terminal.
        c.invoke(&["exec", "--tty", "--console-socket", &path, &c.id, "true"]).fails().says("console socket");
        done(&c);
        return;
    }
    let (out, text) = std::thread::scope(|s| {
        let exec = s.spawn(|| c.invoke(&["exec", "--tty", "--console-socket", &path, &c.id, "sh", "-c", TTY_SCRIPT]));
        let master = sock.master();
        let text = read_pty(&master, T, |s| s.contains("done"));
        (exec.join().expect("exec thread"), text)
    });
    assert_eq!(out.code, 3, "the exit code of the process on the terminal: {out}");
    check_tty_output(&text);
    done(&c);
}

#[test]
fn exec_tty_foreground_proxies_stdio() {
    let c = Container::running("exec_tty_proxy", |_| {});
    // `echo ... | setsid -w RT exec -t ID sh`: stdin a pipe, stdout a file, and no controlling terminal
    // (setsid), so nothing on the runtime's side is a terminal.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg("printf 'echo h\"\"i; exit 7\\n' | setsid -w \"$@\"").arg("sh").arg(&c.rt.path);
    cmd.arg("--root").arg(&c.state_root).arg("--log").arg(&c.log).arg("--log-format").arg("json");
    cmd.args(["exec", "-t", &c.id, "sh"]);
    let out = c.exec(cmd, default_timeout());
    if c.rt.is_runc() {
        // runc 1.1 copies between the pty and a terminal of its own (tty.go initHostConsole: stderr, stdout
        // or stdin, else /dev/tty) and gives up without one: "open /dev/tty: no such device or address".
        out.fails().says("/dev/tty");
    } else {
        // roci proxies the pty master to whatever its stdio are.
        assert_eq!(out.code, 7, "the shell's exit code: {out}");
        let lines: Vec<&str> = out.stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
        // The shell's `echo h""i` prints "hi"; the terminal's echo of the input line shows `h""i`.
        assert!(lines.contains(&"hi"), "the shell's output arrives on the runtime's stdout: {out}");
    }
    done(&c);
}

#[test]
fn exec_process_file() {
    let c = Container::running("exec_process_json", |_| {});
    let file = c.host_path("process.json");
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [1001]},
        "args": ["sh", "-c", "echo \"== id ==\"; id -u; id -g; id -G; echo \"== cwd ==\"; pwd; echo \"== env ==\"; echo \"$FOO|$PATH|$TERM\"; \
                 echo \"== nnp ==\"; grep NoNewPrivs /proc/self/status; echo \"== caps ==\"; grep CapEff /proc/self/status"],
        "env": ["FOO=from-file", "PATH=/bin"],
        "cwd": "/tmp",
        "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": []},
        "noNewPrivileges": true
    });
    std::fs::write(&file, process.to_string()).unwrap();
    let out = c.invoke(&["exec", "--process", file.to_str().unwrap(), &c.id]);
    out.ok();
    assert_eq!(section(&out.stdout, "id"), "1000\n1000\n1000 1001", "user from the file: {out}");
    assert_eq!(section(&out.stdout, "cwd"), "/tmp");
    assert_eq!(section(&out.stdout, "env"), "from-file|/bin|", "the file's env replaces the config's: {out}");
    assert_eq!(section(&out.stdout, "nnp"), "NoNewPrivs:\t1");
    assert_eq!(section(&out.stdout, "caps"), "CapEff:\t0000000000000000");
    done(&c);
}

/// The sorted numbers of a `== fds ==` section.
fn fds(out: &str) -> String {
    let mut v: Vec<u32> = section(out, "fds").lines().filter_map(|l| l.trim().parse().ok()).collect();
    v.sort();
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

#[test]
fn exec_preserve_fds() {
    let c = Container::running("exec_preserve_fds", |_| {});
    let f = c.host_path("fd3.txt");
    std::fs::write(&f, "hello from fd 3\n").unwrap();
    // `ls` of the shell's own fd dir, not in a pipeline (the shell would hold pipe fds) nor last (the shell
    // would exec it, and list ls's fds).
    let script = "echo \"== fds ==\"; ls /proc/$$/fd; echo \"== read ==\"; cat <&3";
    let out =
        c.invoke_via_shell(&format!("exec 3<'{}'", f.display()), &["exec", "--preserve-fds", "1", &c.id, "sh", "-c", script]);
    out.ok();
    assert_eq!(section(&out.stdout, "read"), "hello from fd 3", "{out}");
    assert_eq!(fds(&out.stdout), "0 1 2 3", "{out}");
    // Without the flag fd 3 stays behind.
    let out = c.invoke_via_shell(&format!("exec 3<'{}'", f.display()), &["exec", &c.id, "sh", "-c", script]);
    assert_eq!(fds(&out.stdout), "0 1 2", "{out}");
    done(&c);
}

fn cap_eff(out: &str) -> u64 {
    let line = out.lines().find(|l| l.starts_with("CapEff:")).unwrap_or_else(|| panic!("no CapEff in {out}"));
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).unwrap()
}

const CAP_SYS_ADMIN_BIT: u64 = 1 << 21;

#[test]
fn exec_cap_adds_capability() {
    let c = Container::running("exec_cap", |_| {});
    let out = c.invoke(&["exec", &c.id, "grep", "CapEff", "/proc/self/status"]);
    out.ok();
    assert_eq!(cap_eff(&out.stdout) & CAP_SYS_ADMIN_BIT, 0, "not in the config's sets: {out}");
    let out = c.invoke(&["exec", "--cap", "CAP_SYS_ADMIN", &c.id, "grep", "-E", "Cap(Eff|Prm|Bnd)", "/proc/self/status"]);
    out.ok();
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let line = out.stdout.lines().find(|l| l.starts_with(set)).unwrap_or_else(|| panic!("{set}: {out}"));
        let v = u64::from_str_radix(line[set.len() + 1..].trim(), 16).unwrap();
        assert_ne!(v & CAP_SYS_ADMIN_BIT, 0, "--cap CAP_SYS_ADMIN sets bit 21 of {set}: {out}");
    }
    // The config's own capabilities stay.
    let kill_bit = 1u64 << 5;
    assert_ne!(cap_eff(&out.stdout) & kill_bit, 0, "{out}");
    done(&c);
}

#[test]
fn exec_no_new_privs() {
    let c = Container::running("exec_nnp", |c| {
        c.spec.no_new_privileges(false);
    });
    let out = c.invoke(&["exec", &c.id, "grep", "NoNewPrivs", "/proc/self/status"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "NoNewPrivs:\t0", "the config's noNewPrivileges (false): {out}");
    let out = c.invoke(&["exec", "--no-new-privs", &c.id, "grep", "NoNewPrivs", "/proc/self/status"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "NoNewPrivs:\t1", "{out}");
    done(&c);
}

#[test]
fn exec_in_created_container() {
    // runc allows exec before start: the process joins the namespaces of the init that waits for `start`.
    let mut c = Container::new("exec_created");
    c.spec.sh("echo started > /tmp/started; sleep 1000");
    c.create().ok();
    let out = c.invoke(&["exec", &c.id, "sh", "-c", "echo in-created; ls /tmp"]);
    out.ok();
    assert_eq!(out.lines(), ["in-created"], "exec ran before the program started: {out}");
    assert_eq!(c.status(), "created", "exec does not start the container");
    c.start().ok();
    roci_integration::wait::wait_file(&c.rootfs.join("tmp/started"), T, |s| s == "started\n");
    assert_eq!(c.status(), "running");
    done(&c);
}

#[test]
fn exec_missing_binary() {
    let c = Container::running("exec_missing", |_| {});
    // runc: `exec: "nosuchcmd": executable file not found in $PATH`.
    c.invoke(&["exec", &c.id, "nosuchcmd"]).fails().says("executable file not found in $PATH");
    c.invoke(&["exec", &c.id, "/nonexistent/bin"]).fails().says("no such file or directory");
    assert_eq!(c.status(), "running", "a failed exec leaves the container alone");
    done(&c);
}

#[test]
fn exec_paused_container_fails() {
    let c = Container::running("exec_paused", |_| {});
    c.invoke(&["pause", &c.id]).ok();
    // runc: "cannot exec in a paused container (use --ignore-paused to override)".
    c.invoke(&["exec", &c.id, "true"]).fails().says("paused");
    c.invoke(&["resume", &c.id]).ok();
    c.invoke(&["exec", &c.id, "true"]).ok();
    done(&c);
}

/// `exec --ignore-paused` into a paused container: accepted; the process joins the frozen cgroup, so it
/// runs only once the container is resumed, and a foreground exec waits until then (as runc).
#[test]
fn exec_ignore_paused_runs_once_resumed() {
    let c = Container::running("exec_ign_paused", |_| {});
    c.invoke(&["pause", &c.id]).ok();
    let marker = c.rootfs.join("ran");
    std::thread::scope(|s| {
        let exec = s.spawn(|| c.invoke(&["exec", "--ignore-paused", &c.id, "sh", "-c", "echo ran > /ran; echo done"]));
        std::thread::sleep(Duration::from_millis(1500));
        let early = (marker.exists(), exec.is_finished());
        c.invoke(&["resume", &c.id]).ok();
        let out = exec.join().unwrap();
        assert_eq!(early, (false, false), "nothing runs in a frozen container, the exec waits: {out}");
        out.ok();
        assert!(out.stdout.contains("done"), "{out}");
    });
    assert!(marker.exists(), "the process ran after resume");
    assert_eq!(c.status(), "running");
    done(&c);
}

/// `exec --process FILE` with a wrong type inside fails with an error that names the field (roci) and
/// leaves the container running.
#[test]
fn exec_process_file_wrong_type_names_the_field() {
    let c = Container::running("exec_process_bad", |_| {});
    let file = c.host_path("process.json");
    std::fs::write(&file, json!({"args": "sh", "cwd": "/", "user": {"uid": 0, "gid": 0}}).to_string()).unwrap();
    let out = c.invoke(&["exec", "--process", file.to_str().unwrap(), &c.id]);
    out.fails();
    // runc: "json: cannot unmarshal string into Go struct field Process.args of type []string".
    out.says("args");
    if !c.rt.is_runc() {
        // runc exits 255 on any error; roci's 128+N would be a death by signal N (a panic: 134).
        assert_eq!(out.code, 1, "{out}");
        out.says("process.json: args: invalid type");
    }
    assert_eq!(c.status(), "running");
    done(&c);
}
