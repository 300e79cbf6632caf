//! `roci-pause`: the process of a pod's infra container. It holds the pod's namespaces open for
//! the pod's containers to join, reaps the orphans that end up with it (it is PID 1 of the pod's
//! PID namespace when the pod shares one), and exits 0 on SIGINT or SIGTERM. It does nothing else:
//! no file is read or written, no memory allocated after start, and its binary is static so that
//! it runs in a rootfs holding nothing but itself.
//!
//! Signals are blocked and taken with `sigwait`, never by handlers: a blocked signal is queued
//! even for a PID namespace's init (the kernel drops only unblocked signals that init has no
//! handler for), so SIGTERM from the runtime on the host reaches it.

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => {}
        Some("-v") | Some("--version") => {
            println!("roci-pause {VERSION}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("roci-pause: unexpected argument {other:?} (usage: roci-pause [-v])");
            return ExitCode::from(2);
        }
    }
    if getpid() != Pid::from_raw(1) {
        eprintln!("roci-pause: warning: not PID 1 of its PID namespace, orphans of the pod are reaped by another process");
    }
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        signals.add(signal);
    }
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        eprintln!("roci-pause: block SIGINT, SIGTERM and SIGCHLD: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(signal) => {
                eprintln!("roci-pause: shutting down on {signal}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("roci-pause: wait for signals: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Reap every child that has exited (one SIGCHLD may stand for several).
fn reap() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("roci-pause: reap children: {e}");
                return;
            }
        }
    }
}
