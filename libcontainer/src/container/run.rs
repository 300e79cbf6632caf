//! `run`: create and start, then (unless detached) stay in the foreground
//! as the init's parent: forward signals to it, proxy its terminal when the
//! caller gave no console socket, reap it, delete the container and return
//! its exit code.

use std::os::fd::AsFd;

use nix::sys::signal::SigmaskHow;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;

use super::create;
use super::foreground::{forwarded_signals, supervise};
use super::{delete, start, Error, Result};
use crate::tty;

pub struct Options<'a> {
    pub create: create::Options<'a>,
    pub detach: bool,
    /// Leave the stopped container for the caller to delete.
    pub keep: bool,
}

/// Returns the exit code `roci run` should exit with.
pub fn run(mut opts: Options<'_>) -> Result<i32> {
    let root = opts.create.root;
    let id = opts.create.id.to_owned();
    // A config that does not load is reported by `create`, in its order.
    if opts.create.loaded.is_none() {
        opts.create.loaded = crate::spec::load(opts.create.bundle).ok();
    }
    let wants_tty =
        opts.create.loaded.as_ref().and_then(|b| b.spec.process().as_ref().and_then(|p| p.terminal())).unwrap_or(false);
    let mut proxy = None;
    if wants_tty && opts.create.console_socket.is_none() && !opts.detach {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|e| Error::Sys { op: "console socketpair".into(), source: e.into() })?;
        opts.create.console_fd = Some(theirs);
        proxy = Some(ours);
    }
    if wants_tty && opts.create.console_socket.is_none() && opts.detach {
        return Err(Error::Usage("cannot allocate a tty when detaching without --console-socket".into()));
    }

    // Signals are collected from here on and forwarded once the init runs;
    // the init unblocks them for itself before executing the program.
    let forwarded = forwarded_signals();
    if !opts.detach {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
            .map_err(|e| Error::Sys { op: "block signals".into(), source: e.into() })?;
    }
    opts.create.hold = true;
    let mut created = create::create(opts.create)?;
    let master = match proxy {
        Some(sock) => match tty::recv_fd(sock.as_fd()) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = delete::delete(root, &id, true);
                return Err(Error::Sys { op: "receive console".into(), source: e.source });
            }
        },
        None => None,
    };
    let held = created.held.take().expect("create::Options::hold gives a held init");
    if let Err(e) = start::release(held) {
        let _ = delete::delete(root, &id, true);
        let _ = waitpid(created.pid, None);
        return Err(e);
    }
    if opts.detach {
        return Ok(0);
    }
    let code = supervise(created.pid, master, &forwarded);
    if !opts.keep {
        if let Err(e) = delete::delete(root, &id, true) {
            tracing::warn!(error = %e, "delete after run");
        }
    }
    code
}
