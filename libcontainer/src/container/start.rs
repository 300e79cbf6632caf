//! `start`: release a created container's init to execute the program.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::unistd::{unlinkat, UnlinkatFlags};

use super::create::Held;
use super::{hook_state, status, Error, Result, Status};
use crate::hooks;
use crate::process::channel::{self, FromInit, ToInit};
use crate::state::{self, Dir};

/// Start the container; returns once the program has been executed, or
/// with the init's error if it could not be.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let dir = Dir::open(root, id)?;
    let saved = dir.load()?;
    match status(&dir.path, saved.as_ref()) {
        Status::Created => {}
        Status::Stopped => return Err(Error::Status("cannot start a container that has stopped".into())),
        Status::Running | Status::Paused => return Err(Error::Status("cannot start an already running container".into())),
        Status::Creating => return Err(Error::Status(format!("container {id:?} is still being created"))),
    }
    let saved = saved.expect("created containers have state");
    let sock = PathBuf::from(format!("/proc/self/fd/{}/{}", dir.fd().as_raw_fd(), state::START_SOCKET));
    let mut conn = UnixStream::connect(&sock).map_err(|source| Error::Io {
        op: "connect to",
        path: dir.path.join(state::START_SOCKET),
        source,
    })?;
    conn.write_all(b"s").map_err(|source| Error::Io {
        op: "signal start on",
        path: dir.path.join(state::START_SOCKET),
        source,
    })?;
    // The container counts as running from here on.
    if let Err(e) = unlinkat(dir.fd(), state::START_SOCKET, UnlinkatFlags::NoRemoveDir) {
        tracing::warn!(error = %e, "remove start socket");
    }
    // The init closes its end by executing the program (close-on-exec), or
    // writes why it could not.
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    // The poststart hooks run once the init is released, also when it then
    // failed (a startContainer hook, the program's exec): runc, crun and
    // youki all run them at that point without waiting for the outcome, and
    // hook users (conformance suites among them) count on it. The failure is
    // still reported, after the hooks.
    let state = hook_state(id, Status::Running, saved.pid, &saved.bundle, &saved.annotations);
    let spec = saved.spec()?;
    let poststart = spec.hooks().as_ref().and_then(|h| h.poststart().as_ref());
    for hook in poststart.into_iter().flatten() {
        // The runtime spec: a failing poststart hook is logged, not fatal.
        if let Err(e) = hooks::run("poststart", hook, &state) {
            tracing::warn!(error = %e, "poststart hook failed");
        }
    }
    if !reply.is_empty() {
        return Err(Error::Init(reply));
    }
    Ok(())
}

/// Start a container created with [`create::Options::hold`] (`run`): tell
/// its init over the channel, wait for the `execve` (the channel closes) or
/// the reason there was none, run the poststart hooks. What [`start`] does
/// for a created container, without `start.sock` and without reloading
/// the state.
///
/// [`create::Options::hold`]: super::create::Options::hold
pub fn release(held: Held) -> Result<()> {
    held.channel.send(&ToInit::Start)?;
    let failure = match held.channel.recv::<FromInit>() {
        Err(channel::Error::Closed) => None,
        Ok(FromInit::Failed { message }) => Some(message),
        Ok(other) => Some(format!("unexpected message from the container's init: {other:?}")),
        Err(e) => return Err(e.into()),
    };
    // As in `start`: the hooks run once the init is released, also when it failed.
    for hook in &held.poststart {
        if let Err(e) = hooks::run("poststart", hook, &held.running_state) {
            tracing::warn!(error = %e, "poststart hook failed");
        }
    }
    match failure {
        Some(message) => Err(Error::Init(message)),
        None => Ok(()),
    }
}
