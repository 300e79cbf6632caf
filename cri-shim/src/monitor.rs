//! The daemon's side of a container's monitor (`libcontainer::monitor`): start one with
//! `roci monitor`, then talk to it over its control socket.
//!
//! [`spawn`] writes the monitor's config and runs `roci [--log L] monitor CONFIG`; that process
//! forks the monitor, which creates the container, and exits once it has printed the result, so
//! the daemon's child is short-lived and the monitor (the container's parent) is never this
//! process's child. A [`Client`] sends one request per connection (the protocol is in
//! `libcontainer::monitor::proto`). When the container's init exits the monitor writes the exit
//! record and goes away: [`read_exit_record`] reads it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use libcontainer::monitor::{Config, ErrorKind, ExitRecord, Request, Response, SpawnReport, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("write the monitor config {path}: {source}")]
    WriteConfig { path: PathBuf, source: std::io::Error },
    #[error("run {roci} monitor: {source}")]
    Run { roci: PathBuf, source: std::io::Error },
    /// `roci monitor` ran but printed no report (it crashed, or is not a roci with `monitor`).
    #[error("{roci} monitor {config}: no report ({status}); stderr: {stderr}")]
    NoReport { roci: PathBuf, config: PathBuf, status: String, stderr: String },
    /// The monitor could not create the container (nothing of it is left).
    #[error("create container {id} through its monitor: {message}")]
    Create { id: String, message: String },
    #[error("monitor socket {socket}: {op}: {source}")]
    Io { socket: PathBuf, op: &'static str, source: std::io::Error },
    #[error("monitor socket {socket}: {reason}")]
    Protocol { socket: PathBuf, reason: String },
    /// ExecSync ran past its timeout; the process was killed.
    #[error("exec_sync timed out: {0}")]
    Timeout(String),
    /// The monitor refused or failed the request; `kind` tells which (a gRPC status).
    #[error("{message}")]
    Refused { kind: ErrorKind, message: String },
    #[error("read the exit record {path}: {reason}")]
    ExitRecord { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, MonitorError>;

/// A monitor that created its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// The container's init.
    pub pid: i32,
    /// The monitor.
    pub monitor_pid: i32,
}

/// Write `config` to `config_path` and run `roci monitor` on it. `log` is the `--log` file of
/// the monitor's own messages (JSON lines); without one they are dropped (the monitor's stderr is
/// /dev/null: it outlives this call).
pub async fn spawn(roci: &Path, config_path: &Path, config: &Config, log: Option<&Path>) -> Result<Spawned> {
    let data = serde_json::to_vec_pretty(config).expect("monitor configs serialise");
    let tmp = config_path.with_extension("json.tmp");
    let write_err = |source| MonitorError::WriteConfig { path: config_path.to_owned(), source };
    if let Some(dir) = config_path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(write_err)?;
    }
    tokio::fs::write(&tmp, &data).await.map_err(write_err)?;
    tokio::fs::rename(&tmp, config_path).await.map_err(write_err)?;

    let mut cmd = tokio::process::Command::new(roci);
    cmd.arg("--root").arg(&config.root);
    if let Some(log) = log {
        cmd.arg("--log").arg(log).arg("--log-format").arg("json");
    }
    cmd.arg("monitor").arg(config_path).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().await.map_err(|source| MonitorError::Run { roci: roci.to_owned(), source })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<SpawnReport>(stdout.lines().next().unwrap_or_default()) {
        Ok(SpawnReport::Created { pid, monitor_pid }) => Ok(Spawned { pid, monitor_pid }),
        Ok(SpawnReport::Failed { error }) => Err(MonitorError::Create { id: config.id.clone(), message: error }),
        Err(_) => Err(MonitorError::NoReport {
            roci: roci.to_owned(),
            config: config_path.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
    }
}

/// What an ExecSync returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The init's pid and status as the monitor sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub pid: i32,
    pub status: Status,
    pub started_at: Option<String>,
}

/// A connection factory for one monitor's control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client { socket: socket.into() }
    }

    /// Release the created container's program; when it was started.
    pub async fn start(&self) -> Result<String> {
        match self.call(&Request::Start).await? {
            (Response::Started { started_at }, _) => Ok(started_at),
            (other, _) => Err(self.unexpected(other)),
        }
    }

    /// Run `argv` in the container and wait for its output; a `timeout` of zero waits for ever.
    /// The caller bounds the wait for the monitor itself (it answers once the process is gone).
    pub async fn exec_sync(&self, argv: &[String], env: &[String], timeout: std::time::Duration) -> Result<ExecOutput> {
        // CRI's timeout is whole seconds; a fraction rounds up, so it is never shorter.
        let timeout_secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let req = Request::ExecSync { argv: argv.to_vec(), env: env.to_vec(), timeout_secs };
        match self.call(&req).await? {
            (Response::ExecSync { exit_code, stdout_len, stderr_len }, tail) => {
                if tail.len() != stdout_len + stderr_len {
                    return Err(MonitorError::Protocol {
                        socket: self.socket.clone(),
                        reason: format!("exec_sync: {} output bytes, {stdout_len} + {stderr_len} announced", tail.len()),
                    });
                }
                let (stdout, stderr) = tail.split_at(stdout_len);
                Ok(ExecOutput { exit_code, stdout: stdout.to_vec(), stderr: stderr.to_vec() })
            }
            (other, _) => Err(self.unexpected(other)),
        }
    }

    /// Make the monitor open its log file again (after it was renamed for rotation).
    pub async fn reopen_log(&self) -> Result<()> {
        match self.call(&Request::ReopenLog).await? {
            (Response::LogReopened, _) => Ok(()),
            (other, _) => Err(self.unexpected(other)),
        }
    }

    pub async fn state(&self) -> Result<State> {
        match self.call(&Request::State).await? {
            (Response::State { pid, status, started_at }, _) => Ok(State { pid, status, started_at }),
            (other, _) => Err(self.unexpected(other)),
        }
    }

    /// One request, its response and the bytes after it.
    async fn call(&self, req: &Request) -> Result<(Response, Vec<u8>)> {
        let io = |op| {
            let socket = self.socket.clone();
            move |source| MonitorError::Io { socket, op, source }
        };
        let mut conn = connect(&self.socket).await.map_err(io("connect"))?;
        conn.write_all(&req.encode()).await.map_err(io("send the request"))?;
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).await.map_err(io("read the response"))?;
        let (resp, tail) =
            split_reply(&reply).map_err(|reason| MonitorError::Protocol { socket: self.socket.clone(), reason })?;
        match resp {
            Response::Error { kind: ErrorKind::Timeout, message } => Err(MonitorError::Timeout(message)),
            Response::Error { kind, message } => Err(MonitorError::Refused { kind, message }),
            r => Ok((r, tail.to_vec())),
        }
    }

    fn unexpected(&self, r: Response) -> MonitorError {
        MonitorError::Protocol { socket: self.socket.clone(), reason: format!("unexpected response {r:?}") }
    }
}

/// Connect to the socket at `path` through its directory's fd, so that a path longer than
/// `sun_path` (108 bytes: state dirs under a long root plus a 64-digit id) still reaches it.
async fn connect(path: &Path) -> std::io::Result<UnixStream> {
    use std::os::fd::AsRawFd;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixStream::connect(path).await;
    };
    let dir = std::fs::File::open(dir)?;
    let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    let conn = UnixStream::connect(&via).await;
    drop(dir);
    conn
}

/// The response line and the bytes after it.
fn split_reply(reply: &[u8]) -> std::result::Result<(Response, &[u8]), String> {
    let Some(end) = reply.iter().position(|b| *b == b'\n') else {
        return Err(if reply.is_empty() {
            "the monitor closed the connection without answering".into()
        } else {
            format!("unterminated response {:?}", String::from_utf8_lossy(reply))
        });
    };
    let resp = serde_json::from_slice(&reply[..end]).map_err(|e| format!("bad response: {e}"))?;
    Ok((resp, &reply[end + 1..]))
}

/// The exit record at `path`; `None` while the container runs (the monitor writes it whole,
/// with a rename, once the init has exited).
pub async fn read_exit_record(path: &Path) -> Result<Option<ExitRecord>> {
    let bad = |reason: String| MonitorError::ExitRecord { path: path.to_owned(), reason };
    let data = match tokio::fs::read(path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let record: ExitRecord = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    if record.version != libcontainer::monitor::proto::VERSION {
        return Err(bad(format!("version {} is not {}", record.version, libcontainer::monitor::proto::VERSION)));
    }
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_into_response_and_output() {
        let (r, tail) =
            split_reply(b"{\"result\":\"exec_sync\",\"exit_code\":2,\"stdout_len\":3,\"stderr_len\":1}\nabc\n").unwrap();
        assert_eq!(r, Response::ExecSync { exit_code: 2, stdout_len: 3, stderr_len: 1 });
        assert_eq!(tail, b"abc\n");
        assert!(split_reply(b"").unwrap_err().contains("without answering"));
        assert!(split_reply(b"{\"result\"").unwrap_err().contains("unterminated"));
        assert!(split_reply(b"{\"result\":\"nope\"}\n").unwrap_err().contains("bad response"));
    }

    /// A stand-in monitor that answers one connection with `reply`, and what it was asked.
    async fn fake(reply: Vec<u8>) -> (tempfile::TempDir, Client, tokio::task::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut asked = Vec::new();
            let mut b = [0u8; 1];
            while conn.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
                asked.push(b[0]);
            }
            conn.write_all(&reply).await.unwrap();
            asked
        });
        (dir, Client::new(path), task)
    }

    #[tokio::test]
    async fn exec_sync_round_trip() {
        let (_d, c, asked) =
            fake(b"{\"result\":\"exec_sync\",\"exit_code\":0,\"stdout_len\":2,\"stderr_len\":3}\nhierr".to_vec()).await;
        let out = c.exec_sync(&["echo".into(), "hi".into()], &[], std::time::Duration::from_millis(1500)).await.unwrap();
        assert_eq!(out, ExecOutput { exit_code: 0, stdout: b"hi".to_vec(), stderr: b"err".to_vec() });
        let asked: Request = serde_json::from_slice(&asked.await.unwrap()).unwrap();
        assert_eq!(asked, Request::ExecSync { argv: vec!["echo".into(), "hi".into()], env: vec![], timeout_secs: 2 });
    }

    #[tokio::test]
    async fn timeouts_and_refusals_are_told_apart() {
        let (_d, c, _) = fake(Response::error(ErrorKind::Timeout, "after 1s").encode()).await;
        assert!(matches!(
            c.exec_sync(&["x".into()], &[], std::time::Duration::from_secs(1)).await,
            Err(MonitorError::Timeout(_))
        ));
        let (_d, c, _) = fake(Response::error(ErrorKind::FailedPrecondition, "exited").encode()).await;
        assert!(matches!(c.start().await, Err(MonitorError::Refused { kind: ErrorKind::FailedPrecondition, .. })));
        let (_d, c, _) = fake(b"{\"result\":\"exec_sync\",\"exit_code\":0,\"stdout_len\":5,\"stderr_len\":0}\nhi".to_vec()).await;
        assert!(matches!(c.exec_sync(&["x".into()], &[], Default::default()).await, Err(MonitorError::Protocol { .. })));
    }

    #[tokio::test]
    async fn exit_records_absent_or_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.json");
        assert_eq!(read_exit_record(&p).await.unwrap(), None);
        std::fs::write(&p, r#"{"version":1,"pid":3,"exit_code":137,"signal":9,"finished_at":"t","oom_killed":true}"#).unwrap();
        let r = read_exit_record(&p).await.unwrap().unwrap();
        assert_eq!((r.exit_code, r.signal, r.oom_killed, r.started_at), (137, Some(9), true, None));
        std::fs::write(&p, r#"{"version":9,"pid":3,"exit_code":0,"finished_at":"t","oom_killed":false}"#).unwrap();
        assert!(read_exit_record(&p).await.unwrap_err().to_string().contains("version 9"));
    }
}
