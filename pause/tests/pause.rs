//! roci-pause as a pod's infra process: PID 1 of a new PID namespace (made by `unshare`), as root.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PAUSE: &str = env!("CARGO_BIN_EXE_roci-pause");

/// `unshare --pid --fork roci-pause`: the pause process is PID 1 of the new namespace.
struct Pod {
    unshare: Child,
}

impl Pod {
    fn start() -> Pod {
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--", PAUSE])
            .stderr(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        Pod { unshare }
    }

    /// The pause process's pid on the host: unshare's only child.
    fn pause_pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.unshare.id())).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                let pid: i32 = pid.parse().unwrap();
                if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.ends_with("roci-pause")) {
                    return pid;
                }
            }
            assert!(Instant::now() < deadline, "roci-pause did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.unshare.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // --kill-child: SIGKILL to unshare takes the pause process (and the namespace) with it.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn state_and_parent(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

#[test]
fn orphans_of_the_pod_are_reaped() {
    let pod = Pod::start();
    let pause = pod.pause_pid();
    // A process entering the pod's PID namespace leaves a child behind: the child is reparented
    // to the namespace's init, roci-pause, and must not stay a zombie once it exits.
    let out = Command::new("nsenter")
        .args(["--target", &pause.to_string(), "--pid", "--", "/bin/sh", "-c"])
        .arg("sleep 0.3 >/dev/null 2>&1 & echo $!")
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "{out:?}");
    // `$!` is the pid in the pod's namespace; find the host pid among pause's children.
    let deadline = Instant::now() + Duration::from_secs(2);
    let orphan = loop {
        let children = std::fs::read_to_string(format!("/proc/{pause}/task/{pause}/children")).unwrap();
        if let Some(pid) = children.split_whitespace().next() {
            break pid.parse::<i32>().unwrap();
        }
        assert!(Instant::now() < deadline, "the orphan was not reparented to roci-pause");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(state_and_parent(orphan).map(|(_, ppid)| ppid), Some(pause));
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_and_parent(orphan).is_some_and(|(_, ppid)| ppid == pause) {
        assert!(Instant::now() < deadline, "the orphan {orphan} is still there: {:?}", state_and_parent(orphan));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_from_the_host_ends_it_with_status_zero() {
    for signal in ["TERM", "INT"] {
        let mut pod = Pod::start();
        let pause = pod.pause_pid();
        // A signal that arrives before roci-pause has blocked it is dropped (an init without a
        // handler), as for any pause process (a runtime's stop falls back to SIGKILL): send it
        // again until it is taken.
        let mut status = None;
        for _ in 0..50 {
            Command::new("kill").args([&format!("-{signal}"), &pause.to_string()]).status().unwrap();
            status = pod.wait(Duration::from_millis(100));
            if status.is_some() {
                break;
            }
        }
        let status = status.unwrap_or_else(|| panic!("roci-pause ignored SIG{signal}"));
        // unshare --fork exits with its child's status.
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}");
    }
}

#[test]
fn other_signals_do_not_end_it() {
    let mut pod = Pod::start();
    let pause = pod.pause_pid();
    for signal in ["HUP", "USR1", "CHLD"] {
        Command::new("kill").args([&format!("-{signal}"), &pause.to_string()]).status().unwrap();
    }
    assert!(pod.wait(Duration::from_millis(300)).is_none(), "roci-pause exited on a signal it should ignore");
}

#[test]
fn version_and_bad_arguments() {
    let out = Command::new(PAUSE).arg("-v").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("roci-pause "));
    let out = Command::new(PAUSE).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}
