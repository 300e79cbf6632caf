//! Running a command with a timeout and capturing its output.
//!
//! Output goes to files, not pipes: a container started by `create`/`run -d` inherits the runtime's
//! stdout and stderr and keeps them open long after the runtime exits, so reading a pipe to EOF would hang.
//! A file is complete when the command exits, and can be read again later for what the container wrote.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Default deadline for one runtime invocation: 20 s, or `ROCI_TEST_TIMEOUT` seconds.
pub fn default_timeout() -> Duration {
    static T: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        let secs = std::env::var("ROCI_TEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
        Duration::from_secs(secs)
    })
}

#[derive(Debug, Clone)]
pub struct Output {
    /// What was run, for messages.
    pub command: String,
    /// Exit code; 128+N when killed by signal N (as a shell reports it).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// What the runtime appended to its `--log` file during this invocation.
    pub log: String,
    /// True when the deadline passed and the command was killed.
    pub timed_out: bool,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0 && !self.timed_out
    }

    /// Panics with the full output unless the command exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command failed (non-zero exit, not a timeout).
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(!self.timed_out, "command timed out instead of failing: {self}");
        assert_ne!(self.code, 0, "command succeeded but should have failed: {self}");
        self
    }

    /// Everything the runtime said about an error: stderr and the JSON log.
    pub fn error_text(&self) -> String {
        format!("{}\n{}", self.stderr, self.log)
    }

    /// Panics unless the error text contains `needle` (case-insensitive).
    #[track_caller]
    pub fn says(&self, needle: &str) -> &Self {
        assert!(
            self.error_text().to_lowercase().contains(&needle.to_lowercase()),
            "expected the runtime's error output to mention {needle:?}: {self}"
        );
        self
    }

    /// Panics unless the error text contains one of `needles` (case-insensitive).
    #[track_caller]
    pub fn says_any(&self, needles: &[&str]) -> &Self {
        let text = self.error_text().to_lowercase();
        assert!(
            needles.iter().any(|n| text.contains(&n.to_lowercase())),
            "expected the runtime's error output to mention one of {needles:?}: {self}"
        );
        self
    }

    /// stdout as written so far (a container started by `create`/`run -d` keeps writing after the runtime exits).
    pub fn stdout_now(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr_now(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// stdout lines, trimmed.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines().map(|l| l.trim().to_string()).collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}{}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- log ---\n{}",
            self.command,
            self.code,
            if self.timed_out { " (timed out, killed)" } else { "" },
            self.stdout,
            self.stderr,
            self.log
        )
    }
}

/// Run `cmd` to completion with stdout/stderr in `<out_base>.out`/`.err`, killing it (by its pid only)
/// after `timeout`. `log` is the runtime's `--log` file whose new content is attached to the output.
pub fn run_captured(mut cmd: Command, out_base: &Path, log: Option<&Path>, timeout: Duration) -> Output {
    let stdout_path = out_base.with_extension("out");
    let stderr_path = out_base.with_extension("err");
    let stdout = File::create(&stdout_path).expect("create stdout file");
    let stderr = File::create(&stderr_path).expect("create stderr file");
    let log_start = log.and_then(|l| std::fs::metadata(l).ok()).map_or(0, |m| m.len());
    let command = describe(&cmd);
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {command}: {e}"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            break child.wait().expect("wait for killed child");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    let log_text = log
        .and_then(|l| std::fs::read(l).ok())
        .map(|b| String::from_utf8_lossy(b.get(log_start as usize..).unwrap_or(&[])).into_owned())
        .unwrap_or_default();
    Output {
        command,
        code,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        log: log_text,
        timed_out,
        stdout_path,
        stderr_path,
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!("'{a}'"));
        } else {
            s.push_str(&a);
        }
    }
    s
}
