//! A new process in a running container (`roci exec`): a clone of the
//! runtime that joins the container's namespaces with one `setns` on the
//! init's pidfd, takes the container's root, and becomes the program.
//!
//! The runtime has already entered the init's PID (and time) namespace for
//! its children, and the clone was born in the container's cgroup2
//! directory and enters its v1 cgroups itself (see `cgroups::Entry`), so no
//! second fork is needed.
//!
//! ```text
//!  runtime                               exec'd process (this module)
//!  clone ──────────────────────────────▶ wait
//!  Proceed ────────────────────────────▶ enter the cgroup, setns(pidfd,
//!                                        namespaces), chroot to the
//!                                        init's root, setsid, rlimits, console,
//!                                        user, capabilities, cwd, lookup, execve
//!  EOF (close-on-exec) ◀────────────────  or Failed{message}
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sched::{setns, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{chroot, fchdir, setsid};
use oci_spec::runtime::Process;

use super::channel::{Channel, FromInit, ToInit};
use super::{become_process, sys_err, Error, Program};
use crate::{rlimits, tty};

pub struct ExecArgs<'a> {
    pub process: &'a Process,
    pub channel: Channel,
    /// The container init's pidfd.
    pub pidfd: BorrowedFd<'a>,
    /// Namespaces to join (the container's, less PID and time, which the
    /// runtime entered for us).
    pub namespaces: CloneFlags,
    /// The init's root directory (`/proc/PID/root`), opened by the runtime.
    pub root: OwnedFd,
    pub console: Option<OwnedFd>,
    /// Stdio other than the runtime's (the monitor's pipes).
    pub stdio: Option<super::Stdio>,
    pub keep_fds: RawFd,
    pub extra_env: Vec<String>,
    /// The container's `linux.seccomp`, compiled by the runtime.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
    /// The container's `linux` (personality, memory policy).
    pub linux: Option<&'a oci_spec::runtime::Linux>,
    /// The container's cgroup (or the `--cgroup` sub-cgroup), entered first
    /// thing after `Proceed`.
    pub cgroup: Option<&'a crate::cgroups::Entry>,
}

/// Entry point of the exec'd process; returns an exit code on failure.
pub fn run(args: ExecArgs<'_>) -> i32 {
    super::report_panics_to(args.channel.raw_fd(), true);
    let err = match prepare(&args) {
        Ok(program) => program.exec(),
        Err(e) => e,
    };
    let _ = args.channel.send(&FromInit::Failed { message: err.to_string() });
    Program::exit_code(&err)
}

fn prepare(a: &ExecArgs<'_>) -> Result<Program, Error> {
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(sys_err("set parent death signal"))?;
    // A runtime killed before the signal was set leaves no half-joined process.
    super::init::runtime_alive(&a.channel)?;
    prctl::set_dumpable(false).map_err(sys_err("set non-dumpable"))?;
    match a.channel.recv::<ToInit>()? {
        ToInit::Proceed => {}
        other => return Err(Error::Message(format!("unexpected message {other:?}"))),
    }
    if let Some(stdio) = &a.stdio {
        stdio.install()?;
    }
    if let Some(entry) = a.cgroup {
        entry.enter_self()?;
    }
    super::fault_injection("panic-in-exec", a.process);
    if !a.namespaces.is_empty() {
        tracing::debug!(flags = ?a.namespaces, "setns into the container");
        setns(a.pidfd, a.namespaces).map_err(sys_err("join the container's namespaces"))?;
    }
    // The init's root (its pivot_root, or its chroot with --no-pivot).
    fchdir(&a.root).map_err(sys_err("enter the container's root"))?;
    chroot(".").map_err(sys_err("chroot to the container's root"))?;
    setsid().map_err(sys_err("setsid"))?;
    if let Some(rl) = a.process.rlimits() {
        rlimits::apply(rl)?;
    }
    if let Some(console) = &a.console {
        let size = a.process.console_size().map(|b| (b.height() as u16, b.width() as u16));
        tty::setup_console(console.as_fd(), size, false)?;
    }
    crate::attrs::apply_all(a.process, a.linux)?;
    let (program, listener) =
        become_process(a.process, &a.extra_env, a.keep_fds, &[a.channel.raw_fd(), a.root.as_raw_fd()], a.seccomp)?;
    if let Some(l) = listener {
        super::hand_over_listener(&a.channel, l)?;
    }
    // The parent-death signal survives execve: clear it so the program
    // outlives `roci exec -d`.
    prctl::set_pdeathsig(None).map_err(sys_err("clear parent death signal"))?;
    Ok(program)
}
