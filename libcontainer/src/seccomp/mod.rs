//! seccomp: the OCI profile (`linux.seccomp`) compiled to a BPF filter,
//! installed in the container's process, and the user-notification listener
//! handed to a seccomp agent.
//!
//! The three steps and where they run:
//! 1. [`compile`] in the runtime, before the container process is cloned:
//!    pure, so a bad profile fails `create`/`exec` early and no compiler runs
//!    inside the container; `create` and `exec` go through
//!    [`compile_cached`], which keeps compiled programs under the state root
//!    by content hash (`cache`). Syscall names are resolved with roci's own tables
//!    (`tables/`, from the kernel's UAPI headers), the program is generated
//!    directly (libseccomp-free; seccompiler knows one architecture per build
//!    and no user notification, so only its instruction type is used).
//! 2. [`Filter::install`] in the container's process, last thing before
//!    execve (the caller orders it against capabilities and no_new_privs).
//! 3. [`send_listener`] in the runtime, when a rule uses `SCMP_ACT_NOTIFY`:
//!    the listener fd and the container process state go to `listenerPath`.
//!
//! # Semantics (what runc with libseccomp does, and where roci differs)
//! - **Architectures.** The native ABI is always filtered; listed ABIs of the
//!   same kernel family are added (x86_64 build: x86_64, x86, x32; aarch64:
//!   aarch64, arm). ABIs of another family can never be reported by this
//!   kernel and are skipped. A syscall through an ABI that is not filtered
//!   gets `SECCOMP_RET_KILL_THREAD`, libseccomp's default bad-arch action,
//!   which runc keeps: otherwise a process could dodge rules written for
//!   x86_64 numbers by entering through `int 0x80` (i386) or the x32 ABI.
//!   x32 shares `AUDIT_ARCH_X86_64` and is told apart by `__X32_SYSCALL_BIT`
//!   in the syscall number, as libseccomp does.
//! - **Names** are resolved per architecture; a name unknown on one is
//!   skipped there, a name unknown on all is skipped with a debug log (runc).
//! - **Rule order.** Rules whose action equals the default action are dropped
//!   (runc and crun do so; libseccomp refuses them). Among the remaining rules
//!   of one syscall the first in profile order whose argument tests all hold
//!   decides (what crun does and runtime-spec PR #1159 describes for runc);
//!   none → default action. libseccomp's own merge of overlapping rules with
//!   different actions is undocumented; Docker's and Podman's profiles never
//!   depend on it (their overlapping rules share the action).
//! - **Arguments.** Tests in one rule are ANDed, compared as unsigned 64-bit
//!   values (two 32-bit halves in cBPF). `SCMP_CMP_MASKED_EQ` is
//!   `(arg & value) == valueTwo`. If one rule tests the same argument twice,
//!   runc turns each test into a rule of its own (so they are ORed); roci
//!   does the same. On 32-bit ABIs (x86, x32, arm) only the low 32 bits of an
//!   argument are read, as libseccomp does; a value with high bits set is
//!   compared as if the argument's high half were zero.
//! - **errnoRet** defaults to EPERM for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`
//!   (runc); on other actions it is an error (runtime-spec).
//! - **-ENOSYS for new syscalls** (runc's patchbpf stub): unless the default
//!   action is permissive (ALLOW, LOG, TRACE) or already ENOSYS, syscalls with
//!   a number above the largest one the profile names on that ABI return
//!   ENOSYS, so programs fall back (glibc: clone3 → clone) instead of failing
//!   with EPERM. runc does this only for listed architectures; roci for every
//!   filtered ABI.
//! - **Not done**: the i386 `socketcall`/`ipc` multiplexers are only matched
//!   by those names; a rule on `socket` does not cover `socketcall(SYS_SOCKET,
//!   ...)` (libseccomp ≥ 2.4 adds such rules). Docker's profile allows
//!   `socketcall` outright, so it is unaffected; a deny-list profile that
//!   lists `socket` is not enforced for i386 programs that use socketcall.
//!
//! # Notify
//! `SCMP_ACT_NOTIFY` needs `listenerPath` and cannot be the default action or
//! apply to `write`/`send`/`sendto`/`sendmsg` (the init's own way of telling
//! the runtime the listener's fd number, which must not wait for an agent
//! that does not have the listener yet). Every other syscall the init makes
//! between [`Filter::install`] and execve (reading the channel, closing fds,
//! execve itself) waits for the agent if the profile notifies on it.

mod arch;
mod bpf;
mod cache;
mod compile;
mod tables;

pub use cache::{compile_cached, CACHE_DIR};

#[cfg(test)]
mod interp;
#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile is wrong; `field` is its JSON path, e.g.
    /// `linux.seccomp.syscalls[3].args[0].index`.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("linux.seccomp: the filter needs {len} BPF instructions, more than the kernel's limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("linux.seccomp: roci has no syscall table for this build's architecture")]
    UnsupportedArch,
    #[error("install seccomp filter ({len} instructions, flags {flags:#x}): {source}")]
    Install { len: usize, flags: u32, source: std::io::Error },
    #[error("send seccomp listener to {path}: {source}")]
    Listener { path: PathBuf, source: std::io::Error },
    #[error("send seccomp listener to {path}: container state is not JSON: {source}")]
    State { path: PathBuf, source: serde_json::Error },
}

/// A compiled profile, ready to install.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<sys::seccomp::sock_filter>,
    /// seccomp(2) flags, NEW_LISTENER included when a rule notifies.
    flags: u32,
    listener: bool,
}

/// Validate `linux.seccomp` and build its BPF program for this build's
/// architecture (and the compat ABIs its kernel runs). Pure.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter, Error> {
    let native = arch::Arch::native().ok_or(Error::UnsupportedArch)?;
    let started = std::time::Instant::now();
    let filter = compile::compile_for(seccomp, native)?;
    tracing::debug!(
        instructions = filter.program.len(),
        flags = filter.flags,
        elapsed_us = started.elapsed().as_micros() as u64,
        "seccomp: profile compiled"
    );
    Ok(filter)
}

impl Filter {
    /// Attach the filter to the calling thread (to all of the process's
    /// threads with `SECCOMP_FILTER_FLAG_TSYNC`). Returns the notification
    /// listener when a rule uses `SCMP_ACT_NOTIFY`.
    ///
    /// The caller sets no_new_privs itself when the config asks for it;
    /// without it the thread must hold CAP_SYS_ADMIN (EACCES otherwise).
    /// Allocates nothing itself (the debug line aside, when a subscriber
    /// records it).
    pub fn install(&self) -> Result<Option<OwnedFd>, Error> {
        tracing::debug!(instructions = self.program.len(), flags = self.flags, "seccomp(SECCOMP_SET_MODE_FILTER)");
        sys::seccomp::set_mode_filter(self.flags, &self.program).map_err(|source| Error::Install {
            len: self.program.len(),
            flags: self.flags,
            source,
        })
    }

    /// Whether [`Filter::install`] returns a listener to hand to
    /// [`send_listener`].
    pub fn uses_notify(&self) -> bool {
        self.listener
    }
}

/// Hand a seccomp listener to the agent at `listener_path` (runtime-spec
/// `linux.seccomp.listenerPath`): connect (AF_UNIX, SOCK_STREAM), send one
/// container process state with the fd as SCM_RIGHTS in the same sendmsg,
/// close.
///
/// `pid` is the process the filter was installed in, as the runtime sees it
/// (the init for `create`, the new process for `exec`); `state_json` is the
/// container's OCI state; `metadata` is `listenerMetadata` ("" for none).
/// The message is runc's:
/// `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}`.
pub fn send_listener(fd: BorrowedFd<'_>, listener_path: &Path, metadata: &str, pid: Pid, state_json: &[u8]) -> Result<(), Error> {
    let path = listener_path.to_path_buf();
    let state: Value = serde_json::from_slice(state_json).map_err(|source| Error::State { path: path.clone(), source })?;
    let mut msg = json!({
        "ociVersion": crate::container::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid.as_raw(),
        "state": state,
    });
    if !metadata.is_empty() {
        msg["metadata"] = Value::String(metadata.to_owned());
    }
    let data = serde_json::to_vec(&msg).expect("a JSON value serializes");
    let err = |source| Error::Listener { path: path.clone(), source };
    tracing::debug!(path = %listener_path.display(), pid = pid.as_raw(), bytes = data.len(), "seccomp: sending listener to agent");
    let mut stream = UnixStream::connect(listener_path).map_err(err)?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = loop {
        match sendmsg::<()>(stream.as_raw_fd(), &[IoSlice::new(&data)], &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => break n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(err(e.into())),
        }
    };
    // The fd went with the first bytes; the rest, if the socket took only
    // part, follows without it (the spec allows several sendmsg calls).
    stream.write_all(&data[sent..]).map_err(err)?;
    Ok(())
}

/// The `linux.seccomp` object of the OCI features document.
pub fn features() -> Value {
    use compile::{FLAG_LOG, FLAG_NEW_LISTENER, FLAG_SPEC_ALLOW, FLAG_TSYNC, FLAG_WAIT_KILLABLE_RECV};
    let known = [
        ("SECCOMP_FILTER_FLAG_TSYNC", FLAG_TSYNC),
        ("SECCOMP_FILTER_FLAG_LOG", FLAG_LOG),
        ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", FLAG_SPEC_ALLOW),
        // Only meaningful, and only accepted by the kernel, with a listener.
        ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER),
    ];
    let supported: Vec<&str> =
        known.iter().filter(|(_, bits)| sys::seccomp::filter_flags_supported(*bits)).map(|(name, _)| *name).collect();
    // Every architecture with a table; those of another kernel family are
    // accepted and need no rules (see the module doc).
    let mut archs: Vec<&str> = match arch::Arch::native() {
        Some(_) => arch::Arch::ALL.iter().map(|a| a.name()).collect(),
        None => Vec::new(),
    };
    archs.sort();
    json!({
        "enabled": arch::Arch::native().is_some(),
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
        ],
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": archs,
        "knownFlags": known.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "supportedFlags": supported,
    })
}
