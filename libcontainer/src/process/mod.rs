//! The container's processes: the init (a clone of the runtime that sets
//! itself up and then executes the user's program) and the channel it
//! talks to the runtime over.

pub mod channel;
pub mod exec;
pub mod init;

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::prctl;
use nix::sys::stat::{umask, Mode};
use nix::unistd::chdir;
use oci_spec::runtime::Process;

use crate::seccomp::Filter;
use crate::{caps, hooks, rlimits, rootfs, sys, tty, user};

/// Failures inside a container process before it executes the program;
/// their text travels to the runtime over the channel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Channel(#[from] channel::Error),
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::Error),
    #[error(transparent)]
    Rootfs(#[from] rootfs::Error),
    #[error(transparent)]
    Hook(#[from] hooks::Error),
    #[error(transparent)]
    Console(#[from] tty::Error),
    #[error(transparent)]
    Rlimit(#[from] rlimits::Error),
    #[error(transparent)]
    Caps(#[from] caps::Error),
    #[error(transparent)]
    User(#[from] user::Error),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::Error),
    #[error(transparent)]
    Attr(#[from] crate::attrs::Error),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::Error),
    #[error("enter the container's cgroup: {0}")]
    Cgroup(#[from] crate::cgroups::Error),
    #[error("{op}: {source}")]
    Sys { op: String, source: std::io::Error },
    #[error("{0}")]
    Message(String),
}

/// Where a panic in a container process is reported: the fd of the channel
/// to the runtime (a JSON [`channel::FromInit::Failed`] packet) or, once
/// `start` has connected, of that connection (plain text). -1: nowhere.
static PANIC_SINK: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
static PANIC_SINK_IS_CHANNEL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Make a panic in this container process (the init or an exec'd one, a
/// clone of the runtime) reach the runtime as text. With `panic = "abort"`
/// (the release profile) `catch_unwind` catches nothing: the process would
/// die of SIGABRT and the runtime would see a closed channel. The hook runs
/// before the abort and sends the panic's message and place to `fd` as a
/// `Failed` message, which the runtime prints as any other init failure.
/// Called in the child only (the hook is process-wide, and the child's
/// memory is its own copy); the parent is single-threaded, so the hook's
/// lock is free.
pub(crate) fn report_panics_to(fd: RawFd, is_channel: bool) {
    use std::sync::atomic::Ordering;
    PANIC_SINK.store(fd, Ordering::SeqCst);
    PANIC_SINK_IS_CHANNEL.store(is_channel, Ordering::SeqCst);
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let message = format!("container process panicked{place}: {payload}");
            let fd = PANIC_SINK.load(Ordering::SeqCst);
            if fd < 0 {
                return;
            }
            let data = if PANIC_SINK_IS_CHANNEL.load(Ordering::SeqCst) {
                serde_json::to_vec(&channel::FromInit::Failed { message }).unwrap_or_default()
            } else {
                message.into_bytes()
            };
            let _ = nix::sys::socket::send(fd, &data, nix::sys::socket::MsgFlags::MSG_NOSIGNAL);
        }));
    });
}

/// A panic on purpose, for the tests that check a panic reaches the runtime
/// as text: when `process.env` holds `ROCI_FAULT_INJECTION=<point>`. Only in
/// builds with the `fault-injection` feature (`cargo test` of the `roci`
/// package turns it on); release builds have no such code.
#[cfg(feature = "fault-injection")]
pub(crate) fn fault_injection(point: &str, process: &Process) {
    let want = format!("ROCI_FAULT_INJECTION={point}");
    if process.env().iter().flatten().any(|e| *e == want) {
        panic!("fault injection: {point}");
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn fault_injection(_point: &str, _process: &Process) {}

/// The stdin, stdout and stderr a container process gets instead of the
/// runtime's own (which it inherits otherwise): the monitor's pipes. Put in
/// place by the process itself, first thing after `Proceed`; the fds are
/// close-on-exec, so only the copies at 0-2 reach the program.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Stdio {
    pub(crate) fn install(&self) -> Result<(), Error> {
        use std::os::fd::AsFd;
        for (fd, target, name) in [(&self.stdin, 0, "stdin"), (&self.stdout, 1, "stdout"), (&self.stderr, 2, "stderr")] {
            sys::dup2_stdio(fd.as_fd(), target)
                .map_err(|source| Error::Sys { op: format!("make the given {name} fd {target}"), source })?;
        }
        Ok(())
    }
}

pub(crate) fn sys_err(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let op = op.into();
    move |e| Error::Sys { op, source: e.into() }
}

fn cstring(b: &[u8]) -> Result<CString, Error> {
    CString::new(b).map_err(|_| Error::Message(format!("{:?} contains a NUL byte", String::from_utf8_lossy(b))))
}

/// The last steps shared by the init and exec'd processes, once inside the
/// container's filesystem: capabilities around the switch to the
/// process's user, umask, working directory, environment, the program's
/// path, no_new_privs, the seccomp filter, and which fds survive the exec
/// (`0..3+keep_fds`; `internal` fds must lie above that range: they close
/// on exec).
///
/// The seccomp filter goes in as late as it can: without no_new_privs
/// installing it needs CAP_SYS_ADMIN, so it is installed before the
/// capabilities are dropped; with a listener, before the runtime (which
/// hands the listener on) is told the process is ready; otherwise just
/// before `execve` ([`Program::exec`]). A listener is returned to the
/// caller to report.
pub(crate) fn become_process(
    process: &Process,
    extra_env: &[String],
    keep_fds: RawFd,
    internal: &[RawFd],
    filter: Option<&Filter>,
) -> Result<(Program, Option<OwnedFd>), Error> {
    let nnp = process.no_new_privileges().unwrap_or(false);
    let mut listener = None;
    if let Some(f) = filter.filter(|_| !nnp) {
        listener = f.install()?;
    }
    let sets = caps::Sets::new(process.capabilities().as_ref())?;
    sets.drop_bounding()?;
    prctl::set_keepcaps(true).map_err(sys_err("set keep-caps"))?;
    let u = process.user();
    user::switch(u.uid(), u.gid(), u.additional_gids().as_deref().unwrap_or_default())?;
    sets.apply()?;
    prctl::set_keepcaps(false).map_err(sys_err("clear keep-caps"))?;
    umask(Mode::from_bits_truncate(u.umask().unwrap_or(0o022)));
    chdir(process.cwd()).map_err(sys_err(format!("chdir to process.cwd {}", process.cwd().display())))?;

    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    env.extend(extra_env.iter().cloned());
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user::home(u.uid())));
    }
    let args = process.args().as_deref().unwrap_or_default();
    let first = args.first().ok_or_else(|| Error::Message("process.args is empty".into()))?;
    let path_var = env.iter().rev().find_map(|e| e.strip_prefix("PATH="));
    let path = lookup(first, path_var).map_err(Error::Message)?;
    let mut program = Program {
        path: cstring(path.as_os_str().as_encoded_bytes())?,
        argv: args.iter().map(|s| cstring(s.as_bytes())).collect::<Result<_, _>>()?,
        envp: env.iter().map(|s| cstring(s.as_bytes())).collect::<Result<_, _>>()?,
        filter: None,
    };

    if nnp {
        prctl::set_no_new_privs().map_err(sys_err("set no_new_privs"))?;
        match filter {
            Some(f) if f.uses_notify() => listener = f.install()?,
            Some(f) => program.filter = Some(f.clone()),
            None => {}
        }
    }
    let first_closed = 3 + keep_fds;
    if internal.iter().any(|fd| *fd < first_closed) {
        return Err(Error::Message(format!(
            "--preserve-fds: fds 3 to {} are not all open; the runtime's own fds took their numbers",
            first_closed - 1
        )));
    }
    // The profile and label take effect at the program's execve.
    crate::lsm::apply_exec(process)?;
    sys::cloexec_from(first_closed).map_err(|source| Error::Sys { op: "mark fds close-on-exec".into(), source })?;
    for fd in 3..first_closed {
        // A preserved fd that is not open is simply absent in the container.
        let _ = sys::clear_cloexec(fd);
    }
    Ok((program, listener))
}

/// Tell the runtime where the seccomp listener is and keep it open until
/// the runtime has copied it.
pub(crate) fn hand_over_listener(channel: &channel::Channel, listener: OwnedFd) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    channel.send(&channel::FromInit::SeccompListener { fd: listener.as_raw_fd() })?;
    match channel.recv::<channel::ToInit>()? {
        channel::ToInit::ListenerTaken => Ok(()),
        other => Err(Error::Message(format!("unexpected message {other:?}"))),
    }
}

impl Program {
    /// Replace this process with the program; returns only on failure.
    pub(crate) fn exec(&self) -> Error {
        sys::reset_signals();
        if let Some(f) = &self.filter {
            if let Err(e) = f.install() {
                return e.into();
            }
        }
        let argv: Vec<&std::ffi::CStr> = self.argv.iter().map(|s| s.as_c_str()).collect();
        let envp: Vec<&std::ffi::CStr> = self.envp.iter().map(|s| s.as_c_str()).collect();
        let err = sys::execve(&self.path, &argv, &envp);
        Error::Sys { op: format!("exec {:?}", self.path), source: err }
    }

    /// The exit code a shell would give for this exec failure.
    pub(crate) fn exit_code(err: &Error) -> i32 {
        match err {
            Error::Sys { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            Error::Sys { .. } => 126,
            _ => 1,
        }
    }
}

/// The program to execute, resolved as `execvp` would, but against the
/// container's `PATH`, from inside the container and as its user.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// A seccomp filter to install right before `execve`.
    pub filter: Option<Filter>,
}

/// `PATH` used when the container's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Find `name` as `execvp` does. Errors are worded as runc's (Go's
/// `exec.LookPath`), because clients turn them into exit codes: "no such
/// file or directory" and "not found" give 127, "permission denied" 126.
pub fn lookup(name: &str, path_var: Option<&str>) -> Result<PathBuf, String> {
    if name.contains('/') {
        return match check_executable(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!("exec: {name:?}: permission denied")),
            Err(e) => Err(format!("exec: {name:?}: stat {name}: {}", go_errno_text(&e))),
        };
    }
    // As Go's search: a match that cannot be executed is passed over.
    let dirs = path_var.unwrap_or(DEFAULT_PATH);
    for dir in dirs.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!("exec: {name:?}: executable file not found in $PATH"))
}

/// An error as Go prints an errno (lower case, no "(os error N)"): clients match on it.
fn go_errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

fn check_executable(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p)?;
    if meta.is_dir() {
        return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    }
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("prog");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(lookup("prog", Some(&path)).unwrap(), bin);
        let err = lookup("nope", Some(&path)).unwrap_err();
        assert!(err.contains("executable file not found in $PATH"), "{err}");
        assert_eq!(lookup(bin.to_str().unwrap(), None).unwrap(), bin);
        assert!(lookup("/nonexistent/x", None).is_err());
    }

    #[test]
    fn not_executable() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(lookup(f.to_str().unwrap(), None).is_err());
    }
}
