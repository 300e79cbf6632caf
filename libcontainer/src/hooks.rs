//! OCI lifecycle hooks: run each with the container's state on stdin.
//!
//! Which hook runs where (the runtime spec's lifecycle):
//! - `prestart`, `createRuntime`: by `create`, in the runtime's namespaces,
//!   after the container's namespaces and mounts exist, before `pivot_root`;
//! - `createContainer`: by the container's init, in its namespaces, before
//!   `pivot_root` (so the hook's path is the host's);
//! - `startContainer`: by the init after `start`, before the program is
//!   executed (after `pivot_root`: the path is inside the container);
//! - `poststart`: by `start`, after the program was executed;
//! - `poststop`: by `delete`, after the container is gone.

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Hook;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} hook {path}: start: {source}")]
    Spawn { kind: &'static str, path: String, source: std::io::Error },
    #[error("{kind} hook {path}: {status}{stderr}")]
    Failed { kind: &'static str, path: String, status: String, stderr: String },
    #[error("{kind} hook {path}: timeout: still running after {secs}s, killed")]
    Timeout { kind: &'static str, path: String, secs: i64 },
}

/// Run `hooks` in order, one after the other; the first failure stops the
/// list. A hook without `env` inherits the runtime's environment (as runc's).
pub fn run_all(kind: &'static str, hooks: Option<&Vec<Hook>>, state: &[u8]) -> Result<(), Error> {
    for hook in hooks.into_iter().flatten() {
        run(kind, hook, state)?;
    }
    Ok(())
}

/// [`run_all`] for hooks that run in the container (`startContainer`): a
/// hook without `env` gets `env`, the environment of the container's
/// process (`KEY=value` entries), which is what runc's init has by then.
pub fn run_all_with_env(kind: &'static str, hooks: Option<&Vec<Hook>>, state: &[u8], env: &[CString]) -> Result<(), Error> {
    for hook in hooks.into_iter().flatten() {
        run_with_env(kind, hook, state, Some(env))?;
    }
    Ok(())
}

/// Run one hook: `path` with `args` (args[0] is argv[0]) and exactly `env`
/// (the runtime's environment when it has none), the state JSON on stdin,
/// killed after `timeout` seconds.
pub fn run(kind: &'static str, hook: &Hook, state: &[u8]) -> Result<(), Error> {
    run_with_env(kind, hook, state, None)
}

fn run_with_env(kind: &'static str, hook: &Hook, state: &[u8], default_env: Option<&[CString]>) -> Result<(), Error> {
    let path = hook.path().display().to_string();
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    let entries: Option<Vec<&[u8]>> = match (hook.env(), default_env) {
        (Some(env), _) => Some(env.iter().map(|kv| kv.as_bytes()).collect()),
        (None, Some(env)) => Some(env.iter().map(|kv| kv.as_bytes()).collect()),
        (None, None) => None,
    };
    if let Some(entries) = entries {
        cmd.env_clear();
        for kv in entries {
            if let Some(eq) = kv.iter().position(|b| *b == b'=') {
                cmd.env(OsStr::from_bytes(&kv[..eq]), OsStr::from_bytes(&kv[eq + 1..]));
            }
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::inherit()).stderr(Stdio::piped());
    tracing::debug!(kind, path, "run hook");
    let mut child = cmd.spawn().map_err(|source| Error::Spawn { kind, path: path.clone(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(state);
    }
    let timeout = hook.timeout().filter(|t| *t > 0);
    // checked: a timeout of i64::MAX seconds is past what an Instant holds (adding would panic).
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(Duration::from_secs(t as u64)));
    let mut stderr = child.stderr.take();
    let mut err_buf = Vec::new();
    // Wait for the hook, draining its stderr, until the deadline.
    if let Some(ref mut e) = stderr {
        use std::io::Read;
        loop {
            let wait_ms = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()).as_millis().min(i32::MAX as u128) as i32,
                None => -1,
            };
            if wait_ms == 0 {
                break;
            }
            let timeout =
                if wait_ms < 0 { PollTimeout::NONE } else { PollTimeout::try_from(wait_ms).unwrap_or(PollTimeout::MAX) };
            match poll(&mut [PollFd::new(e.as_fd(), PollFlags::POLLIN)], timeout) {
                Ok(0) => break,
                Ok(_) => {
                    let mut buf = [0u8; 4096];
                    match e.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if err_buf.len() < 64 * 1024 {
                                err_buf.extend_from_slice(&buf[..n]);
                            }
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                Err(nix::Error::EINTR) => {}
                Err(_) => break,
            }
        }
    }
    // stderr closed: the hook is exiting (or closed it); wait for its exit
    // for the rest of the time allowed.
    if let Some(d) = deadline {
        let exited = match crate::sys::pidfd_open(nix::unistd::Pid::from_raw(child.id() as i32)) {
            Ok(pidfd) => {
                let left = d.saturating_duration_since(std::time::Instant::now()).as_millis().min(i32::MAX as u128) as i32;
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)), Ok(n) if n > 0)
            }
            // Already reaped or gone: wait() below returns at once.
            Err(_) => true,
        };
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout { kind, path, secs: timeout.unwrap_or(0) });
        }
    }
    let status = child.wait().ok();
    match status {
        Some(s) if s.success() => Ok(()),
        other => {
            let text = String::from_utf8_lossy(&err_buf).trim().to_string();
            Err(Error::Failed {
                kind,
                path,
                status: other.map(|s| s.to_string()).unwrap_or_else(|| "wait failed".into()),
                stderr: if text.is_empty() { String::new() } else { format!(": {text}") },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .env(vec!["X=1".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn state_on_stdin_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        run("test", &hook(&format!("cat > {0}; echo \" $X\" >> {0}", out.display()), None), b"{\"id\":\"c\"}").unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "{\"id\":\"c\"} 1\n");
    }

    #[test]
    fn without_env_a_hook_inherits_the_given_or_the_runtimes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), format!("echo \"$ONE $X\" > {}", out.display())])
            .build()
            .unwrap();
        let env = [CString::new("ONE=two").unwrap(), CString::new("X=y=z").unwrap()];
        run_all_with_env("test", Some(&vec![h.clone()]), b"", &env).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "two y=z\n");
        // Given env wins over the default.
        let mut given = h.clone();
        given.set_env(Some(vec!["ONE=hook".to_string()]));
        run_all_with_env("test", Some(&vec![given]), b"", &env).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hook \n");
        // No default: the runtime's own environment (PATH is set for tests).
        let mut h = h;
        h.set_args(Some(vec!["sh".to_string(), "-c".to_string(), format!("echo \"$PATH\" > {}", out.display())]));
        run("test", &h, b"").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), std::env::var("PATH").unwrap());
    }

    #[test]
    fn failure_carries_stderr() {
        let err = run("test", &hook("echo boom >&2; exit 3", None), b"").unwrap_err().to_string();
        assert!(err.contains("boom") && err.contains('3'), "{err}");
    }

    #[test]
    fn timeout_kills() {
        let start = std::time::Instant::now();
        let err = run("test", &hook("exec sleep 10", Some(1)), b"").unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// Regression (issue 10): a timeout of i64::MAX seconds overflowed the deadline's Instant, a panic.
    #[test]
    fn huge_timeout_is_no_timeout() {
        run("test", &hook("exit 0", Some(i64::MAX)), b"").unwrap();
        let err = run("test", &hook("exit 4", Some(i64::MAX)), b"").unwrap_err().to_string();
        assert!(err.contains('4'), "{err}");
    }

    #[test]
    fn missing_binary() {
        let h = HookBuilder::default().path("/nonexistent/hook").build().unwrap();
        assert!(matches!(run("test", &h, b""), Err(Error::Spawn { .. })));
    }
}
