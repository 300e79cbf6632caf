//! What the daemon and a monitor exchange: the config file it starts with,
//! the line `roci monitor` prints, the control protocol on its socket and
//! the exit record it leaves. Serde types only; no I/O but the pure
//! encoding, so the async client in roci-cri shares them.
//!
//! Control protocol: one request per connection. The client writes one
//! JSON [`Request`] ended by `\n`; the monitor answers one JSON [`Response`]
//! ended by `\n` and closes the connection. An [`Response::ExecSync`] is
//! followed by exactly `stdout_len` bytes of stdout, then `stderr_len`
//! bytes of stderr (raw: the output is bytes, and JSON would grow 16 MiB
//! of it several times over).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The version of [`Config`] this build reads and of [`ExitRecord`] it writes.
pub const VERSION: u32 = 1;

/// Most bytes of stdout, and of stderr, an ExecSync returns; the rest is
/// read and dropped. The same cap as containerd's CRI plugin (16 MiB).
pub const EXEC_OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// The longest request line the monitor reads.
pub const MAX_REQUEST: usize = 1024 * 1024;

/// `roci monitor CONFIG`: the JSON file the daemon writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// [`VERSION`].
    pub version: u32,
    /// The container's id.
    pub id: String,
    /// libcontainer's state root for the container (`roci --root`).
    pub root: PathBuf,
    /// The bundle (holding config.json).
    pub bundle: PathBuf,
    /// The CRI log file; none (the pause container) drops the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_path: Option<PathBuf>,
    /// Where the exit record is written when the container's init exits.
    pub exit_path: PathBuf,
    /// The control socket the monitor listens on.
    pub socket_path: PathBuf,
    /// Give the container a stdin pipe (held open by the monitor for an
    /// attach) instead of /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin after the first attach ends (CRI's
    /// `stdin_once`). Needs `stdin`; refused until the monitor serves attach.
    #[serde(default)]
    pub stdin_once: bool,
    /// Run the init on a terminal (`process.terminal` in the bundle must
    /// say so too); its output is logged as `stdout`.
    #[serde(default)]
    pub tty: bool,
}

/// What `roci monitor` prints on stdout, one line, before it exits (0 with
/// `pid`, 1 with `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SpawnReport {
    Created {
        /// The container's init.
        pid: i32,
        /// The monitor, the init's parent.
        monitor_pid: i32,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Start the created container (libcontainer `start`).
    Start,
    /// Run a process in the container and return its output when it exits.
    ExecSync {
        argv: Vec<String>,
        /// `KEY=VALUE`, over the container's process environment.
        #[serde(default)]
        env: Vec<String>,
        /// Kill it after this long; 0: no limit.
        timeout_secs: u64,
    },
    /// Open the log file again by its path.
    ReopenLog,
    /// The init's pid and status.
    State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request could not be read or is not one.
    BadRequest,
    /// It does not apply now (start twice, exec into an exited container).
    FailedPrecondition,
    /// An ExecSync ran past its timeout; its process was killed and reaped.
    Timeout,
    /// The operation failed (the message says why).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Started {
        started_at: String,
    },
    /// Followed by the output bytes (see the module documentation).
    ExecSync {
        exit_code: i32,
        stdout_len: usize,
        stderr_len: usize,
    },
    LogReopened,
    State {
        pid: i32,
        status: Status,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<String>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error { kind, message: message.into() }
    }

    /// The response as sent: its JSON line.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("responses serialise");
        line.push(b'\n');
        line
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("requests serialise");
        line.push(b'\n');
        line
    }

    /// The request in `line` (without its `\n`).
    pub fn decode(line: &[u8]) -> Result<Request, String> {
        serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
    }
}

/// How the container's init ended, written atomically to the config's
/// `exit_path` once it has been reaped and its output drained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// [`VERSION`].
    pub version: u32,
    pub pid: i32,
    /// The exit status, or 128 + the signal that killed it (as shells and
    /// CRI report it).
    pub exit_code: i32,
    /// The signal that killed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When `start` released it (none if it never was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub finished_at: String,
    /// The kernel's OOM killer killed a process of the container's cgroup
    /// while the monitor watched it (its `oom_kill` count grew).
    pub oom_killed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_read_as_documented() {
        let r = Request::ExecSync { argv: vec!["ls".into()], env: vec![], timeout_secs: 3 };
        let line = r.encode();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(Request::decode(&line[..line.len() - 1]).unwrap(), r);
        assert_eq!(Request::decode(br#"{"op":"start"}"#).unwrap(), Request::Start);
        assert_eq!(Request::decode(br#"{"op":"reopen_log"}"#).unwrap(), Request::ReopenLog);
        assert_eq!(
            Request::decode(br#"{"op":"exec_sync","argv":["true"],"timeout_secs":0}"#).unwrap(),
            Request::ExecSync { argv: vec!["true".into()], env: vec![], timeout_secs: 0 }
        );
        assert!(Request::decode(br#"{"op":"reboot"}"#).unwrap_err().contains("reboot"));
        assert!(Request::decode(br#"{"op":"exec_sync","argv":["a"],"timeout_secs":1,"extra":1}"#).is_err());
    }

    #[test]
    fn responses_are_tagged_lines() {
        let r = Response::error(ErrorKind::Timeout, "too slow");
        assert_eq!(r.encode(), b"{\"result\":\"error\",\"kind\":\"timeout\",\"message\":\"too slow\"}\n");
        let s = Response::State { pid: 7, status: Status::Running, started_at: None };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"result":"state","pid":7,"status":"running"}"#);
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: Config =
            serde_json::from_str(r#"{"version":1,"id":"c","root":"/r","bundle":"/b","exit_path":"/e","socket_path":"/s"}"#)
                .unwrap();
        assert_eq!((c.log_path, c.stdin, c.stdin_once, c.tty), (None, false, false, false));
        let e = serde_json::from_str::<Config>(
            r#"{"version":1,"id":"c","root":"/r","bundle":"/b","exit_path":"/e","socket_path":"/s","ttty":true}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("ttty"), "{e}");
    }

    #[test]
    fn spawn_report_is_either_shape() {
        let ok: SpawnReport = serde_json::from_str(r#"{"pid":5,"monitor_pid":4}"#).unwrap();
        assert_eq!(ok, SpawnReport::Created { pid: 5, monitor_pid: 4 });
        let bad: SpawnReport = serde_json::from_str(r#"{"error":"no"}"#).unwrap();
        assert_eq!(bad, SpawnReport::Failed { error: "no".into() });
    }
}
