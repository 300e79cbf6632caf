//! The container's init: a clone of the runtime that turns itself into the
//! container's first process.
//!
//! ```text
//!  runtime                                   init (this module)
//!  ───────                                   ──────────────────
//!  clone3 ──────────────────────────────────▶ wait
//!  Proceed ─────────────────────────────────▶ enter the cgroup, setsid, join
//!                                            namespaces, new cgroupns,
//!                                            hostname, rlimits, oom_score_adj,
//!                                            rootfs::prepare
//!  prestart, createRuntime hooks ◀────────── RunHooks
//!  HooksDone{state} ────────────────────────▶ createContainer hooks, pivot_root,
//!                                            console, rootfs::finalize, user,
//!                                            capabilities, cwd, program lookup
//!  save state ◀───────────────────────────── Ready         (or Failed{message})
//!  StateSaved ──────────────────────────────▶ clear the parent-death signal
//!  exit ◀─────────────────────────────────── Detached
//!                                            ...blocks in accept() on start.sock
//!  `roci start` connects, sends a byte ─────▶ startContainer hooks, execve
//!  reads EOF (exec closed the socket) ◀───── or an error message, then exit
//! ```
//!
//! `run` starts the container it created itself, so its init makes no
//! `start.sock`: after `Detached` it keeps the channel and waits for
//! `Start` on it; the channel closes at the `execve` (or carries `Failed`).
//! `start.sock` is a file in the state directory, and making, connecting to
//! and removing it, with `start`'s reload of the state, was about a tenth
//! of the runtime's own time in a `run` of `/bin/true` (creating an inode
//! is the costly part on a filesystem that scans for recently deleted ones,
//! ext4 without a journal). Between the saved state and the `execve` such
//! a container shows as `running` rather than `created`.
//!
//! Until the hand-off (`StateSaved`) the init dies with the runtime: a
//! create killed half-way must not leave an init that nothing records (see
//! [`die_with_runtime`]). After it, the init belongs to whoever reaps it and
//! waits for `start` whoever made it.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::stat::{umask, Mode};
use nix::unistd::{sethostname, setsid};

use super::channel::{Channel, FromInit, ToInit};
use super::{sys_err, Error, Program};
use crate::namespaces::Plan;
use crate::rootfs::{self, Setup};
use crate::spec::Bundle;
use crate::{hooks, rlimits, sys, tty};

/// Everything the init needs, prepared by `create` before the clone (the
/// init gets its own copy of this memory).
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub channel: Channel,
    pub namespaces: &'a Plan,
    pub rootfs: Setup<'a>,
    /// The connected `--console-socket`, when the process has a terminal.
    pub console: Option<OwnedFd>,
    /// `start.sock`, listening; `None` for `run`, whose init waits for
    /// [`ToInit::Start`] on the channel.
    pub start: Option<UnixListener>,
    /// Stdio other than the runtime's (the monitor's pipes).
    pub stdio: Option<super::Stdio>,
    pub no_pivot: bool,
    pub new_keyring: bool,
    /// How many fds from 3 up the program inherits (LISTEN_FDS and
    /// `--preserve-fds`).
    pub keep_fds: RawFd,
    /// Added to `process.env` (LISTEN_FDS, LISTEN_PID).
    pub extra_env: Vec<String>,
    /// `linux.seccomp`, compiled by the runtime.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// The container's cgroup, entered first thing after `Proceed`.
    pub cgroup: Option<&'a crate::cgroups::Entry>,
}

/// The init's entry point; returns the exit code when it could not become
/// the container's program.
pub fn run(args: InitArgs<'_>) -> i32 {
    super::report_panics_to(args.channel.raw_fd(), true);
    if die_with_runtime(&args.channel).is_err() {
        return 1;
    }
    let (program, state) = match prepare(&args) {
        Ok(p) => p,
        Err(e) => {
            let _ = args.channel.send(&FromInit::Failed { message: e.to_string() });
            return 1;
        }
    };
    // Switching to the process's user (or entering a user namespace)
    // cleared the parent-death signal: set it again until the hand-off.
    if die_with_runtime(&args.channel).is_err() || args.channel.send(&FromInit::Ready).is_err() {
        return 1;
    }
    // The hand-off: `create` has saved the state that names this process,
    // so `delete` can find it; from here on `create` exits (or `run` goes on)
    // and this process waits for `start`.
    match args.channel.recv::<ToInit>() {
        Ok(ToInit::StateSaved) => {}
        _ => return 1,
    }
    if prctl::set_pdeathsig(None).is_err() || args.channel.send(&FromInit::Detached).is_err() {
        return 1;
    }
    let Some(listener) = args.start else {
        // `run`: released over the channel, which reports a failure (and a
        // panic, as before) and otherwise closes at the execve.
        match args.channel.recv::<ToInit>() {
            Ok(ToInit::Start) => {}
            _ => return 1,
        }
        let Err(err) = exec(args.bundle, &program, &state);
        let _ = args.channel.send(&FromInit::Failed { message: err.to_string() });
        return Program::exit_code(&err);
    };
    super::report_panics_to(-1, true);
    drop(args.channel);
    let mut conn = match wait_for_start(&listener) {
        Ok(c) => c,
        Err(_) => return 1,
    };
    drop(listener);
    super::report_panics_to(conn.as_raw_fd(), false);
    let Err(err) = exec(args.bundle, &program, &state);
    let _ = conn.write_all(err.to_string().as_bytes());
    Program::exit_code(&err)
}

/// Make this process (the init, or a process `exec` is setting up) die
/// with the runtime that cloned it: SIGKILL when its parent exits.
///
/// The runtime is the parent: `create` clones the init itself, or from an
/// intermediate process with `CLONE_PARENT`; it is single-threaded, so the
/// parent thread (whose exit sends the signal) lives as long as the runtime.
/// The signal is only sent on a death after it is set, so a runtime that
/// died before is noticed by its end of `channel` being closed (the child
/// has closed its own copy; `getppid` cannot tell, it reads 0 in a new PID
/// namespace). The kernel clears the setting when the credentials change
/// (a new user, a user namespace joined) and on executing a set-user-ID
/// program: call this again after such changes. Cost: two syscalls.
pub(crate) fn die_with_runtime(channel: &Channel) -> Result<(), Error> {
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(sys_err("set parent death signal"))?;
    runtime_alive(channel)
}

/// Err when the runtime at the other end of `channel` has exited.
pub(crate) fn runtime_alive(channel: &Channel) -> Result<(), Error> {
    if channel.peer_closed() {
        return Err(Error::Message("the runtime exited during setup".into()));
    }
    Ok(())
}

/// Everything up to `Ready`.
fn prepare(a: &InitArgs<'_>) -> Result<(Program, String), Error> {
    match a.channel.recv::<ToInit>()? {
        ToInit::Proceed => {}
        other => return Err(Error::Message(format!("unexpected message {other:?}"))),
    }
    if let Some(stdio) = &a.stdio {
        stdio.install()?;
    }
    // Before the cgroup namespace (its root is the cgroup we are in) and
    // before anything is charged to a cgroup.
    if let Some(entry) = a.cgroup {
        entry.enter_self()?;
    }
    // Nothing in the container may ptrace us or open our /proc files
    // (our executable is the runtime's) before the program replaces us.
    // Not before Proceed: an unprivileged runtime writes our id maps through
    // /proc/PID, which non-dumpable would close to it.
    prctl::set_dumpable(false).map_err(sys_err("set non-dumpable"))?;
    let spec = &a.bundle.spec;
    let process = spec.process().as_ref().ok_or_else(|| Error::Message("config has no process".into()))?;
    super::fault_injection("panic-in-init", process);

    setsid().map_err(sys_err("setsid"))?;
    a.namespaces.enter()?;
    if a.new_keyring {
        sys::join_session_keyring(&format!("_ses.{}", a.id))
            .map_err(|source| Error::Sys { op: "join session keyring".into(), source })?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sethostname(h).map_err(sys_err(format!("set hostname {h:?}")))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        sys::setdomainname(d).map_err(|source| Error::Sys { op: format!("set domainname {d:?}"), source })?;
    }
    if let Some(rl) = process.rlimits() {
        rlimits::apply(rl)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        // Through the host's /proc, which is still mounted here.
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|source| Error::Sys { op: format!("set process.oomScoreAdj to {adj}"), source })?;
    }

    // Devices and files are created with exactly the modes asked for.
    umask(Mode::empty());
    rootfs::prepare(&a.rootfs)?;

    a.channel.send(&FromInit::RunHooks)?;
    let state = match a.channel.recv::<ToInit>()? {
        ToInit::HooksDone { state } => state,
        other => return Err(Error::Message(format!("unexpected message {other:?}"))),
    };
    let spec_hooks = spec.hooks().as_ref();
    hooks::run_all("createContainer", spec_hooks.and_then(|h| h.create_container().as_ref()), state.as_bytes())?;

    rootfs::enter(&a.rootfs, a.no_pivot)?;
    if let Some(console) = &a.console {
        let size = process.console_size().map(|b| (b.height() as u16, b.width() as u16));
        tty::setup_console(console.as_fd(), size, true)?;
    }
    rootfs::finalize(&a.rootfs)?;
    crate::attrs::apply_all(process, spec.linux().as_ref())?;

    // What the init still holds at the execve (close-on-exec).
    let internal = match &a.start {
        Some(l) => l.as_raw_fd(),
        None => a.channel.raw_fd(),
    };
    let (program, listener) = super::become_process(process, &a.extra_env, a.keep_fds, &[internal], a.seccomp)?;
    if let Some(l) = listener {
        super::hand_over_listener(&a.channel, l)?;
    }
    Ok((program, state))
}

/// Wait until `roci start` connects and sends its byte. A connection that
/// closes without one (a probe) is ignored.
fn wait_for_start(listener: &UnixListener) -> std::io::Result<UnixStream> {
    loop {
        let (mut conn, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut b = [0u8; 1];
        match conn.read(&mut b) {
            Ok(1) => return Ok(conn),
            _ => continue,
        }
    }
}

/// startContainer hooks, then the program. Returns only on failure.
fn exec(bundle: &Bundle, program: &Program, state: &str) -> Result<Infallible, Error> {
    let spec = &bundle.spec;
    if let Some(process) = spec.process() {
        super::fault_injection("panic-after-start", process);
    }
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.start_container().as_ref()) {
        let mut state: serde_json::Value = serde_json::from_str(state).map_err(|e| Error::Message(format!("hook state: {e}")))?;
        state["status"] = "created".into();
        hooks::run_all_with_env("startContainer", Some(h), state.to_string().as_bytes(), &program.envp)?;
    }
    Err(program.exec())
}
