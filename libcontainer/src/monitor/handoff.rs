//! The monitor starts over once the container is made: it executes its own
//! binary again and hands the new image only what its loop needs.
//!
//! Creating the container leaves the monitor's memory high: the parsed
//! spec and state, the seccomp program, mountinfo and the rest sit freed
//! but resident in the allocator's heap, the deepest frames of `create` in
//! the stack, and every page of the binary's text it ran through mapped.
//! A monitor lives as long as its container and a node runs one per
//! container and per pod, so that memory is paid many times over. A fresh
//! image of the same binary holds a few pages of heap and stack and maps
//! only the loop's code. The cost is one `execve` of the static binary
//! (about a millisecond) per container start.
//!
//! What crosses the `execve`: the fds the loop serves (the init's pidfd,
//! the container's output and stdin, the log file, the control socket, the
//! report pipe to `roci monitor`), each left open by clearing its
//! close-on-exec flag (every other fd is closed), and a JSON [`Handoff`] in a sealed memfd named by
//! [`HANDOFF_FD_ENV`]. The process stays what it was: the init's parent and
//! a child subreaper, with the stop signals blocked (a signal that arrived
//! meanwhile is still pending and read from a new signalfd). The binary is
//! `/proc/self/exe`, so the new image runs from the same protected view of
//! the runtime (see [`crate::selfexe`]) and the processes it later clones
//! for ExecSync do too.
//!
//! When the `execve` fails, the monitor goes on in the old image: more
//! memory, nothing lost.

use std::ffi::{CString, OsString};
use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

use super::proto::Config;
use super::{Error, Result};
use crate::cgroups::CgroupPath;

/// The environment variable that tells a `roci monitor` it is the new image
/// of a monitor, and names the memfd holding its [`Handoff`].
pub const HANDOFF_FD_ENV: &str = "_ROCI_MONITOR_HANDOFF_FD";

/// What the new image needs besides its fds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Handoff {
    pub config: Config,
    pub init: i32,
    /// The container's process, which ExecSync processes are made from.
    pub base_process: Process,
    pub cgroup_path: Option<CgroupPath>,
    pub oom_at_start: Option<u64>,
    pub fds: Fds<RawFd>,
}

/// The fds that cross the `execve`, by role: numbers in the [`Handoff`],
/// owned once taken over.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Fds<T> {
    /// The write end of the pipe `roci monitor` waits on for the report.
    pub report: T,
    /// The control socket, listening.
    pub listener: T,
    pub init_pidfd: Option<T>,
    /// The read ends of the container's stdout and stderr (with a terminal:
    /// the pty master as stdout).
    pub outputs: [Option<T>; 2],
    pub stdin: Option<T>,
    /// The CRI log file, open for appending.
    pub log: Option<T>,
}

impl<T> Fds<T> {
    /// Every fd, in one fixed order ([`Fds::map`] keeps it).
    fn list(&self) -> Vec<&T> {
        let mut all = vec![&self.report, &self.listener];
        all.extend(self.init_pidfd.iter());
        all.extend(self.outputs.iter().flatten());
        all.extend(self.stdin.iter());
        all.extend(self.log.iter());
        all
    }

    /// The same roles, each fd through `f`, in the order of [`Fds::list`].
    fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Fds<U> {
        let report = f(&self.report);
        let listener = f(&self.listener);
        let init_pidfd = self.init_pidfd.as_ref().map(&mut f);
        let out = self.outputs[0].as_ref().map(&mut f);
        let err = self.outputs[1].as_ref().map(&mut f);
        let stdin = self.stdin.as_ref().map(&mut f);
        let log = self.log.as_ref().map(&mut f);
        Fds { report, listener, init_pidfd, outputs: [out, err], stdin, log }
    }
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::Sys { op: format!("monitor handoff: {op}"), source: e.into() }
}

/// Execute this binary again, with the same arguments and environment, as
/// the new image of this monitor. Returns only when that failed, with every
/// fd as it was.
pub(super) fn exec(handoff: &Handoff) -> Error {
    let fds = handoff.fds.list();
    let mut kept = Vec::new();
    let e = match exec_keeping(handoff, &fds, &mut kept) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    for fd in kept {
        let _ = crate::sys::set_cloexec(fd);
    }
    e
}

/// [`exec`], recording in `kept` each fd whose close-on-exec flag it cleared.
fn exec_keeping(handoff: &Handoff, fds: &[&RawFd], kept: &mut Vec<RawFd>) -> Result<std::convert::Infallible> {
    let data = serde_json::to_vec(handoff).map_err(|e| Error::Sys {
        op: "monitor handoff: encode".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let memfd = memfd_create(c"roci-monitor-handoff", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(sys("memfd_create"))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&data)
        .and_then(|()| file.rewind())
        .map_err(|source| Error::Sys { op: "monitor handoff: write the memfd".into(), source })?;
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(file.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(sys("seal the memfd"))?;
    // Only these cross: anything else this process holds without close-on-exec (an fd its
    // spawner leaked into `roci monitor`, one a library left open) is closed by the execve.
    crate::sys::cloexec_from(3).map_err(|source| Error::Sys { op: "monitor handoff: mark fds close-on-exec".into(), source })?;
    for &&fd in fds.iter().chain([&&file.as_raw_fd()]) {
        crate::sys::clear_cloexec(fd)
            .map_err(|source| Error::Sys { op: format!("monitor handoff: keep fd {fd} open"), source })?;
        kept.push(fd);
    }
    let cstring = |v: Vec<u8>| CString::new(v).ok();
    let argv: Vec<CString> = std::env::args_os().filter_map(|a| cstring(a.into_vec())).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != HANDOFF_FD_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(&v.into_vec());
            cstring(kv)
        })
        .collect();
    envp.extend(cstring(format!("{HANDOFF_FD_ENV}={}", file.as_raw_fd()).into_bytes()));
    let e = nix::unistd::execve(c"/proc/self/exe", &argv, &envp).unwrap_err();
    Err(sys("execve /proc/self/exe")(e))
}

/// In the new image of a monitor ([`HANDOFF_FD_ENV`] set): its handoff and
/// its fds, taken over. `None` in any other process.
pub(super) fn take() -> Option<Result<(Handoff, Fds<OwnedFd>)>> {
    let var = std::env::var_os(HANDOFF_FD_ENV)?;
    std::env::remove_var(HANDOFF_FD_ENV);
    Some(take_from(var))
}

fn take_from(var: OsString) -> Result<(Handoff, Fds<OwnedFd>)> {
    let bad = |reason: String| Error::Config { path: PathBuf::from(format!("${HANDOFF_FD_ENV}")), reason };
    let memfd: RawFd = var.to_str().and_then(|v| v.parse().ok()).ok_or_else(|| bad(format!("{var:?} is not an fd number")))?;
    // Read through a new open of the memfd (nothing owns the number yet); it is taken over
    // below with the others, so no fd it names can be the memfd's.
    let path = PathBuf::from(format!("/proc/self/fd/{memfd}"));
    let data = std::fs::read(&path).map_err(|source| Error::Io { op: "read the monitor handoff", path, source })?;
    let handoff: Handoff = serde_json::from_slice(&data).map_err(|e| bad(format!("fd {memfd}: not a monitor handoff: {e}")))?;
    let mut numbers: Vec<RawFd> = handoff.fds.list().into_iter().copied().collect();
    numbers.push(memfd);
    let mut owned = crate::sys::adopt_inherited_fds(&numbers)
        .map_err(|source| Error::Sys { op: "monitor handoff: take over the inherited fds".into(), source })?
        .into_iter();
    let fds = handoff.fds.map(|_| owned.next().expect("one owned fd per number"));
    // What is left is the memfd, closed here.
    drop(owned);
    Ok((handoff, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_roles_keep_their_order() {
        let fds = Fds { report: 10, listener: 11, init_pidfd: None, outputs: [Some(12), Some(13)], stdin: None, log: Some(14) };
        assert_eq!(fds.list(), [&10, &11, &12, &13, &14]);
        let mut next = 100..;
        let mapped = fds.map(|_| next.next().unwrap());
        assert_eq!((mapped.report, mapped.listener, mapped.init_pidfd), (100, 101, None));
        assert_eq!((mapped.outputs, mapped.stdin, mapped.log), ([Some(102), Some(103)], None, Some(104)));
    }
}
