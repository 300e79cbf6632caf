//! Filters installed in the real kernel, each in a child process cloned for
//! the test (the test process itself is never filtered). They need root (to
//! install without no_new_privs, as the runtime does) and skip otherwise.
//!
//! The child runs between clone and exit in a copy of a multi-threaded test
//! process, so it does no allocation: the filter is compiled before, paths
//! are prepared before, and install() allocates nothing on success. Children
//! are killed by pid (through their guard) if a test fails.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::tests::{docker_to_oci, DOCKER_CAPS};
use super::{compile, send_listener, Filter};
use crate::sys;

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("note: skipped, needs root to install seccomp filters without no_new_privs");
    false
}

fn filter(v: Value) -> Filter {
    compile(&serde_json::from_value(v).unwrap()).unwrap()
}

/// A child of this test; killed and reaped on drop unless waited for.
struct Kid {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

impl Kid {
    fn spawn(f: impl FnOnce() -> i32) -> Kid {
        let c = sys::clone_process(0, None, &mut [], f).expect("clone test child");
        Kid { pid: c.pid, pidfd: c.pidfd, reaped: false }
    }

    /// Wait up to 20 s for the child to end.
    fn wait(&mut self) -> WaitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
                WaitStatus::StillAlive => {
                    assert!(Instant::now() < deadline, "child {} did not finish", self.pid);
                    std::thread::sleep(Duration::from_millis(5));
                }
                st => {
                    self.reaped = true;
                    return st;
                }
            }
        }
    }

    fn exit_code(&mut self) -> i32 {
        match self.wait() {
            WaitStatus::Exited(_, code) => code,
            other => panic!("child ended with {other:?}"),
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Lower the child's core limit and dumpability, so a seccomp kill leaves no
/// core file behind.
fn no_core() {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let _ = nix::sys::prctl::set_dumpable(false);
}

#[test]
fn seccomp_kernel_errno_rule() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d").to_str().unwrap().to_owned();
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
                          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}));
    let (f, p) = (&f, path.as_str());
    let mut kid = Kid::spawn(move || {
        if f.install().is_err() {
            return 10;
        }
        if nix::unistd::mkdir(p, Mode::from_bits_truncate(0o755)) != Err(Errno::ENOSYS) {
            return 11;
        }
        if nix::unistd::getpid().as_raw() <= 0 {
            return 12;
        }
        0
    });
    assert_eq!(kid.exit_code(), 0);
    assert!(!Path::new(&path).exists());
}

#[test]
fn seccomp_kernel_masked_eq_on_unshare_flags() {
    if !root() {
        return;
    }
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "value": 0x1000_0000u64, "valueTwo": 0x1000_0000u64, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    let f = &f;
    let mut kid = Kid::spawn(move || {
        if f.install().is_err() {
            return 10;
        }
        if nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWUTS) != Err(Errno::EACCES) {
            return 11;
        }
        // Without CLONE_NEWUSER the rule does not match; as root this works.
        if nix::sched::unshare(CloneFlags::CLONE_NEWUTS).is_err() {
            return 12;
        }
        0
    });
    assert_eq!(kid.exit_code(), 0);
}

#[test]
fn seccomp_kernel_kill_process_and_kill_thread() {
    if !root() {
        return;
    }
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"] {
        let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": action}]}));
        let f = &f;
        let mut kid = Kid::spawn(move || {
            no_core();
            if f.install().is_err() {
                return 10;
            }
            let _ = nix::unistd::getppid();
            11
        });
        match kid.wait() {
            WaitStatus::Signaled(_, Signal::SIGSYS, _) => {}
            other => panic!("{action}: child ended with {other:?}"),
        }
    }
}

#[test]
fn seccomp_kernel_flags_accepted() {
    if !root() {
        return;
    }
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7}]}));
    let f = &f;
    let mut kid = Kid::spawn(move || match f.install() {
        Ok(None) => 0,
        Ok(Some(_)) => 11,
        Err(_) => 10,
    });
    assert_eq!(kid.exit_code(), 0);
}

/// Without no_new_privs the kernel wants CAP_SYS_ADMIN, as the caller's
/// ordering assumes; with it, no capability is needed.
#[test]
fn seccomp_kernel_install_needs_cap_sys_admin_or_no_new_privs() {
    if !root() {
        return;
    }
    let f = filter(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d").to_str().unwrap().to_owned();
    let (f, p) = (&f, path.as_str());
    let mut kid = Kid::spawn(move || {
        if caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_ADMIN).is_err() {
            return 10;
        }
        match f.install() {
            Err(super::Error::Install { source, .. }) if source.raw_os_error() == Some(libc::EACCES) => {}
            _ => return 11,
        }
        if nix::sys::prctl::set_no_new_privs().is_err() || f.install().is_err() {
            return 12;
        }
        if nix::unistd::mkdir(p, Mode::from_bits_truncate(0o755)) != Err(Errno::EPERM) {
            return 13;
        }
        0
    });
    assert_eq!(kid.exit_code(), 0);
}

/// Docker's default profile in the kernel: the program is accepted, ordinary
/// syscalls work, privileged ones fail with EPERM, and clone3 fails with
/// ENOSYS so that a fork falls back to clone(2), which the MASKED_EQ rule on
/// its flags allows.
#[test]
fn seccomp_kernel_docker_default_profile() {
    if !root() {
        return;
    }
    let f = compile(&docker_to_oci("amd64", DOCKER_CAPS)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made").to_str().unwrap().to_owned();
    let (f, p) = (&f, path.as_str());
    let mut kid = Kid::spawn(move || {
        if f.install().is_err() {
            return 10;
        }
        if nix::unistd::mkdir(p, Mode::from_bits_truncate(0o755)).is_err() {
            return 11;
        }
        if nix::sched::unshare(CloneFlags::CLONE_NEWUTS) != Err(Errno::EPERM) {
            return 12;
        }
        if nix::unistd::sethostname("roci-seccomp-test") != Err(Errno::EPERM) {
            return 13;
        }
        // clone3 → ENOSYS → clone(SIGCHLD), allowed.
        let grandchild = match sys::clone_process(0, None, &mut [], || 7) {
            Ok(c) => c,
            Err(_) => return 14,
        };
        match waitpid(grandchild.pid, None) {
            Ok(WaitStatus::Exited(_, 7)) => {}
            _ => return 15,
        }
        // Namespaces are refused: clone(CLONE_NEWUTS) → EPERM.
        match sys::clone_process(libc::CLONE_NEWUTS as u64, None, &mut [], || 0) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            _ => return 16,
        }
        0
    });
    assert_eq!(kid.exit_code(), 0);
    assert!(Path::new(&path).is_dir());
}

/// SCMP_ACT_NOTIFY end to end: the child installs the filter and gets the
/// listener; the test (as the runtime) takes a copy with pidfd_getfd, as runc
/// does, and sends it to an agent thread with send_listener; the agent
/// answers the child's mkdir with EXDEV.
#[test]
fn seccomp_kernel_notify_with_listener() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let target = dir.path().join("notified").to_str().unwrap().to_owned();
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock, "listenerMetadata": "agent-args",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(f.uses_notify());

    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let agent = std::thread::spawn(move || -> Result<(Value, i32), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let (n, fds) = sys::recv_with_fds(stream.as_fd(), &mut buf).map_err(|e| format!("recvmsg: {e}"))?;
        let listener_fd = fds.into_iter().next().ok_or("no fd in the message")?;
        let mut data = buf[..n].to_vec();
        stream.read_to_end(&mut data).map_err(|e| e.to_string())?;
        let state: Value = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
        let notif = sys::seccomp::notif_recv(listener_fd.as_fd()).map_err(|e| format!("NOTIF_RECV: {e}"))?;
        let resp = sys::seccomp::NotifResp { id: notif.id, val: 0, error: -libc::EXDEV, flags: 0 };
        sys::seccomp::notif_send(listener_fd.as_fd(), &resp).map_err(|e| format!("NOTIF_SEND: {e}"))?;
        Ok((state, notif.data.nr))
    });

    let (rd, wr) = nix::unistd::pipe().unwrap();
    let (f_ref, wr_ref, t) = (&f, &wr, target.as_str());
    let mut kid = Kid::spawn(move || {
        let listener = match f_ref.install() {
            Ok(Some(l)) => l,
            _ => return 10,
        };
        if nix::unistd::write(wr_ref, &listener.as_raw_fd().to_ne_bytes()) != Ok(4) {
            return 11;
        }
        match nix::unistd::mkdir(t, Mode::from_bits_truncate(0o755)) {
            Err(Errno::EXDEV) => 0,
            Ok(()) => 12,
            Err(_) => 13,
        }
    });
    drop(wr);
    let mut num = [0u8; 4];
    assert_eq!(nix::unistd::read(&rd, &mut num), Ok(4), "child did not report its listener");
    let pidfd = match kid.pidfd.take() {
        Some(fd) => fd,
        None => sys::pidfd_open(kid.pid).unwrap(),
    };
    let copy = sys::seccomp::pidfd_getfd(pidfd.as_fd(), i32::from_ne_bytes(num)).expect("pidfd_getfd");
    let state = json!({"ociVersion": "1.2.0", "id": "seccomp-test", "status": "creating", "pid": kid.pid.as_raw(),
                       "bundle": "/b", "annotations": {"k": "v"}});
    send_listener(copy.as_fd(), &sock, "agent-args", kid.pid, &serde_json::to_vec(&state).unwrap()).unwrap();
    drop(copy);

    assert_eq!(kid.exit_code(), 0, "the child's mkdir got the agent's answer");
    let (got, nr) = agent.join().unwrap().unwrap();
    assert_eq!(got["ociVersion"], crate::container::OCI_VERSION);
    assert_eq!(got["fds"], json!(["seccompFd"]));
    assert_eq!(got["pid"], kid.pid.as_raw());
    assert_eq!(got["metadata"], "agent-args");
    assert_eq!(got["state"], state);
    assert!(nr == libc::SYS_mkdir as i32 || nr == libc::SYS_mkdirat as i32, "notified for syscall {nr}");
    assert!(!Path::new(&target).exists());
}

#[test]
fn seccomp_send_listener_reports_a_missing_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = nix::unistd::pipe().unwrap();
    let e = send_listener(a.as_fd(), &dir.path().join("none.sock"), "", Pid::from_raw(1), b"{}").unwrap_err();
    assert!(e.to_string().starts_with("send seccomp listener to "), "{e}");
    let e = send_listener(a.as_fd(), &dir.path().join("none.sock"), "", Pid::from_raw(1), b"not json").unwrap_err();
    assert!(e.to_string().contains("container state is not JSON"), "{e}");
}
