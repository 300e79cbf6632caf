//! The per-container monitor: the parent of one container's init, as
//! CRI-O's conmon is, so that the CRI daemon (async, multi-threaded) never
//! forks and is never a container's parent.
//!
//! ```text
//!  roci-cri ── spawn ──▶ roci monitor CONFIG          (exits as soon as it printed)
//!                          │ fork
//!                          ▼
//!                        monitor: setsid, child subreaper, stdio → /dev/null
//!                          │ container::create in-process (stdio: our pipes or a pty)
//!                          ├────────────▶ init (the monitor's child)
//!                          │ bind the control socket
//!                          │ execve /proc/self/exe, handing over the fds (see [`handoff`]):
//!                          │ the setup's memory is given back
//!   {"pid":N,...} ◀─────── │ report over a pipe to `roci monitor`, which prints it
//!                          ▼
//!                        event loop (poll): the init's pidfd, its stdout/stderr → CRI log,
//!                        the control socket (Start, ExecSync, ReopenLog, State),
//!                        ExecSync processes (pidfds, pipes, timeouts)
//!                          │ init exits: drain its output (≤ 1 s), reap, exit record
//!                          ▼ (temp + fsync + rename), remove the socket, exit
//! ```
//!
//! SIGTERM, SIGINT and SIGQUIT sent to the monitor are passed on to the
//! init (read from a signalfd in the loop); the monitor still reaps it and
//! writes the exit record. SIGHUP is ignored.
//!
//! The monitor is not the daemon's child (the process the daemon spawned
//! exits at once, so the monitor is reparented to init or the nearest
//! subreaper) and shares nothing with it but the files the config names:
//! it outlives a daemon killed or restarted. It is a child subreaper, so
//! the container's orphans (without a PID namespace of its own) are
//! reparented to it and reaped.
//!
//! Everything runs on one thread: libcontainer's `create` and `exec` clone
//! the calling process, which must be single-threaded. `start` and the
//! clone of an ExecSync process run inside the loop; they take
//! milliseconds, and the container's output waits in its pipes meanwhile.
//!
//! The files: [`proto`] (config, control protocol, exit record), [`log`]
//! (the CRI log format), [`server`] (the event loop), [`handoff`] (the
//! monitor's fresh start once the container is made).

mod handoff;
pub mod log;
pub mod proto;
mod server;

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

pub use handoff::HANDOFF_FD_ENV;
pub use proto::{Config, ErrorKind, ExitRecord, Request, Response, SpawnReport, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("monitor config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{op}: {source}")]
    Sys { op: String, source: std::io::Error },
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    #[error(transparent)]
    State(#[from] crate::state::Error),
    /// The forked monitor died before it reported.
    #[error("the monitor process exited before it reported: {0}")]
    Lost(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let op = op.into();
    move |e| Error::Sys { op, source: e.into() }
}

/// Read and check the config file.
pub fn load_config(path: &Path) -> Result<Config> {
    let bad = |reason: String| Error::Config { path: path.to_owned(), reason };
    let data = std::fs::read(path).map_err(|source| Error::Io { op: "read monitor config", path: path.to_owned(), source })?;
    let config: Config = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&data))
        .map_err(|e| bad(format!("{}: {}", e.path(), e.inner())))?;
    if config.version != proto::VERSION {
        return Err(bad(format!("version: {} is not {} (the version this roci reads)", config.version, proto::VERSION)));
    }
    crate::spec::validate_id(&config.id).map_err(|e| bad(format!("id: {e}")))?;
    for (field, p) in [
        ("root", Some(&config.root)),
        ("bundle", Some(&config.bundle)),
        ("log_path", config.log_path.as_ref()),
        ("exit_path", Some(&config.exit_path)),
        ("socket_path", Some(&config.socket_path)),
    ] {
        if let Some(p) = p.filter(|p| !p.is_absolute()) {
            return Err(bad(format!("{field}: {} is not an absolute path", p.display())));
        }
    }
    for (field, p) in [("exit_path", &config.exit_path), ("socket_path", &config.socket_path)] {
        if p.file_name().is_none() || p.parent().is_none() {
            return Err(bad(format!("{field}: {} does not name a file", p.display())));
        }
    }
    if config.stdin_once && !config.stdin {
        return Err(bad("stdin_once: needs stdin".into()));
    }
    // It closes stdin when the first attach ends; there is no attach in this build, so it is
    // refused rather than left without effect.
    if config.stdin_once {
        return Err(bad("stdin_once: not supported yet (it needs attach, which this monitor does not serve)".into()));
    }
    Ok(config)
}

/// `roci monitor CONFIG`: fork the monitor and wait for its report (the
/// container created, or why not). `root` is the global `--root` if one was
/// given: it must be the config's.
///
/// Must be called from a single-threaded process running from the
/// protected binary (see [`crate::selfexe`]); the forked monitor never
/// returns from here.
pub fn spawn(config_path: &Path, root: Option<&Path>) -> SpawnReport {
    match spawn_inner(config_path, root) {
        Ok(report) => report,
        Err(e) => SpawnReport::Failed { error: e.to_string() },
    }
}

fn spawn_inner(config_path: &Path, root: Option<&Path>) -> Result<SpawnReport> {
    let config = load_config(config_path)?;
    if let Some(root) = root.filter(|r| *r != config.root) {
        return Err(Error::Config {
            path: config_path.to_owned(),
            reason: format!("root: {} differs from --root {}", config.root.display(), root.display()),
        });
    }
    crate::selfexe::require().map_err(crate::container::Error::from)?;
    let (mut report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("report pipe"))?;
    let child = crate::sys::clone_process(0, None, &mut [&mut report_r], move || server::main(config, report_w))
        .map_err(|source| Error::Sys { op: "fork the monitor".into(), source })?;
    // One line; or EOF if the monitor died first (the container's init, cloned while the
    // monitor held the write end, holds a copy until it executes the program, so EOF is not
    // the sign of a report).
    // The monitor's pidfd tells a monitor that died without a word.
    if let Some(pidfd) = &child.pidfd {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [PollFd::new(report_r.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) if fds[0].any().unwrap_or(false) => break,
                Ok(_) if fds[1].any().unwrap_or(false) => {
                    // Its last words may have arrived with its death.
                    let mut last = [PollFd::new(report_r.as_fd(), PollFlags::POLLIN)];
                    if poll(&mut last, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
                        break;
                    }
                    let status =
                        nix::sys::wait::waitpid(child.pid, None).map(|s| format!("{s:?}")).unwrap_or_else(|e| e.to_string());
                    return Err(Error::Lost(status));
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sys { op: "wait for the monitor's report".into(), source: e.into() }),
            }
        }
    }
    let mut text = String::new();
    let read = std::io::BufReader::new(std::fs::File::from(report_r)).read_line(&mut text);
    if let Ok(report) = serde_json::from_str::<SpawnReport>(text.trim()) {
        return Ok(report);
    }
    let status = nix::sys::wait::waitpid(child.pid, None).map(|s| format!("{s:?}")).unwrap_or_else(|e| e.to_string());
    Err(Error::Lost(match read {
        Ok(_) => format!("{status} (it said {text:?})"),
        Err(e) => format!("{status} (reading its report: {e})"),
    }))
}

/// In the new image a monitor executed once it had created its container
/// (see [`handoff`]): serve that container until it has exited; the
/// process's exit code. `None` in any other process: call it first thing
/// where `roci monitor` is handled.
pub fn resume() -> Option<i32> {
    server::resume()
}

/// Send the report to `roci monitor` and close the pipe.
fn report(to: OwnedFd, report: &SpawnReport) {
    let mut f = std::fs::File::from(to);
    let mut line = serde_json::to_vec(report).unwrap_or_default();
    line.push(b'\n');
    let _ = f.write_all(&line);
}

/// Write `path` through a temp file that is fsync'd before the rename, and
/// sync the directory after: the exit record must survive a crash of the
/// machine (the daemon trusts it over anything else).
pub(crate) fn write_durable(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| Error::Io { op, path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(data).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename", path))?;
    let d = std::fs::File::open(dir).map_err(io("open", dir))?;
    d.sync_all().map_err(io("fsync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("monitor.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn config_errors_name_the_field() {
        let t = tempfile::tempdir().unwrap();
        let base = r#""id":"c","root":"/r","bundle":"/b","exit_path":"/e/exit","socket_path":"/s/sock""#;
        let ok = write_config(t.path(), &format!(r#"{{"version":1,{base}}}"#));
        assert_eq!(load_config(&ok).unwrap().id, "c");
        for (text, want) in [
            (format!(r#"{{"version":2,{base}}}"#), "version: 2"),
            (format!(r#"{{"version":1,{base},"log_path":"rel/log"}}"#), "log_path: rel/log"),
            (format!(r#"{{"version":1,{base},"stdin_once":true}}"#), "stdin_once"),
            (format!(r#"{{"version":1,{base},"stdin":true,"stdin_once":true}}"#), "stdin_once: not supported"),
            (format!(r#"{{"version":1,{base},"tty":"yes"}}"#), "tty"),
            (r#"{"version":1,"id":"../x","root":"/r","bundle":"/b","exit_path":"/e","socket_path":"/s"}"#.into(), "id"),
            (r#"{"version":1,"id":"c","root":"/r","bundle":"/b","exit_path":"/","socket_path":"/s"}"#.into(), "exit_path"),
        ] {
            let p = write_config(t.path(), &text);
            let e = load_config(&p).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("monitor.json"), "{text}: {e}");
        }
    }

    #[test]
    fn durable_write_replaces_whole() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/exit.json");
        write_durable(&p, b"one").unwrap();
        write_durable(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(t.path().join("sub")).unwrap().count(), 1, "no temp file left");
    }
}
