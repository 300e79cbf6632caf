//! Keeping the runtime's binary out of reach of the container.
//!
//! The attack (CVE-2019-5736 against runc): a process inside a container
//! opens `/proc/PID/exe` of a runtime process that has entered the
//! container's PID namespace (an `exec`, or the init of a container that
//! joins an existing PID namespace) and, once the runtime has exited, writes
//! through it, replacing the host's runtime binary with its own code that
//! the host then runs as root.
//!
//! roci's container processes are clones of the runtime, so their
//! `/proc/PID/exe` is the runtime's binary until they execute the program.
//! Two layers stop the attack:
//! - they are non-dumpable until then (`process::init`, `process::exec`),
//!   so only a process with CAP_SYS_PTRACE in the runtime's user namespace
//!   may open their `/proc` files;
//! - when such a process can exist — `exec`, and a container joining an
//!   existing PID namespace — the runtime first re-executes itself from a
//!   sealed memfd copy of its binary ([`ensure_sealed`]), so what
//!   `/proc/PID/exe` reaches cannot be written, nor is it the host's file.
//!
//! The cost is one copy of the binary into memory and one `execve`, paid
//! only on those paths (about 2 ms for a 5 MB binary); a plain `create` or
//! `run` in a new PID namespace has no process that could see the runtime,
//! and pays nothing.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

#[derive(Debug, thiserror::Error)]
#[error("protect the runtime binary: {op}: {source}")]
pub struct Error {
    op: &'static str,
    source: std::io::Error,
}

fn err(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error { op, source }
}

const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// Whether this process already runs from a sealed copy.
pub fn is_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else { return false };
    match fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(SEALS),
        Err(_) => false,
    }
}

/// Re-execute this process from a sealed memfd copy of its binary, with
/// the same arguments and environment, unless it already runs from one.
/// Returns only when nothing had to be done (or on failure).
pub fn ensure_sealed() -> Result<(), Error> {
    if is_sealed() {
        return Ok(());
    }
    let mut exe = File::open("/proc/self/exe").map_err(err("open /proc/self/exe"))?;
    let memfd = memfd_create(c"roci", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).map_err(|e| err("memfd_create")(e.into()))?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut exe, &mut copy).map_err(err("copy the binary"))?;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(SEALS)).map_err(|e| err("seal the copy")(e.into()))?;
    let argv: Vec<CString> = std::env::args_os().filter_map(|a| CString::new(a.as_bytes()).ok()).collect();
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    tracing::debug!("re-executing from a sealed copy of the runtime binary");
    let e = nix::unistd::fexecve(copy.as_fd(), &argv, &envp).map_err(std::io::Error::from).unwrap_err();
    Err(err("execute the sealed copy")(e))
}

/// Whether the bundle's container joins an existing PID namespace (so its
/// init can be seen by processes already there). Reads config.json loosely;
/// a config that fails to parse is reported later by `create` itself.
pub fn joins_pid_namespace(bundle: &Path) -> bool {
    let Ok(data) = std::fs::read(bundle.join("config.json")) else { return false };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else { return false };
    v["linux"]["namespaces"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["type"] == "pid" && n["path"].as_str().is_some_and(|p| !p.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_namespace_join_detected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#).unwrap();
        assert!(joins_pid_namespace(dir.path()));
        std::fs::write(dir.path().join("config.json"), r#"{"linux":{"namespaces":[{"type":"pid"}]}}"#).unwrap();
        assert!(!joins_pid_namespace(dir.path()));
        assert!(!joins_pid_namespace(Path::new("/nonexistent")));
    }

    #[test]
    fn test_binary_is_not_sealed() {
        assert!(!is_sealed());
    }
}
