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
//! - when a process that could pass that check may exist — an `exec` into
//!   a container without a user namespace whose processes may hold
//!   CAP_SYS_PTRACE ([`exec_exposes_runtime`]), and a container joining an
//!   existing PID namespace (whose other processes roci knows nothing
//!   about) — the runtime first re-executes itself from a sealed memfd copy
//!   of its binary ([`ensure_sealed`]), so what `/proc/PID/exe` reaches
//!   cannot be written, nor is it the host's file.
//!
//! The copy and the extra `execve` cost about 3 ms (a third of an exec), so
//! they are paid only where the first layer is not enough; the usual
//! container (Docker's and Kubernetes' default capabilities leave
//! CAP_SYS_PTRACE out, or a user namespace) and a plain `create` or `run`
//! in a new PID namespace pay nothing.

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

const SEALS: SealFlag =
    SealFlag::F_SEAL_SEAL.union(SealFlag::F_SEAL_SHRINK).union(SealFlag::F_SEAL_GROW).union(SealFlag::F_SEAL_WRITE);

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
    let memfd =
        memfd_create(c"roci", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).map_err(|e| err("memfd_create")(e.into()))?;
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

/// Whether a process of the container could open the `/proc/PID/exe` of a
/// non-dumpable runtime process in its PID namespace: that takes
/// CAP_SYS_PTRACE in the runtime's user namespace, which a container with a
/// user namespace never has, and one without has only if its capability
/// bounding set allows it — for its init (`config`), the process about to
/// be exec'd (`process`), or one exec'd earlier (`granted_before`).
pub fn exec_exposes_runtime(
    config: &oci_spec::runtime::Spec,
    process: &oci_spec::runtime::Process,
    granted_before: bool,
) -> bool {
    use oci_spec::runtime::LinuxNamespaceType;
    let userns = config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|ns| ns.typ() == LinuxNamespaceType::User));
    if userns {
        return false;
    }
    granted_before || config.process().as_ref().is_some_and(may_ptrace) || may_ptrace(process)
}

/// Whether a process's capability bounding set allows CAP_SYS_PTRACE.
pub fn may_ptrace(process: &oci_spec::runtime::Process) -> bool {
    process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&oci_spec::runtime::Capability::SysPtrace))
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
        std::fs::write(dir.path().join("config.json"), r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#)
            .unwrap();
        assert!(joins_pid_namespace(dir.path()));
        std::fs::write(dir.path().join("config.json"), r#"{"linux":{"namespaces":[{"type":"pid"}]}}"#).unwrap();
        assert!(!joins_pid_namespace(dir.path()));
        assert!(!joins_pid_namespace(Path::new("/nonexistent")));
    }

    #[test]
    fn exposure_needs_ptrace_without_userns() {
        let spec = |caps: &str, userns: bool| -> oci_spec::runtime::Spec {
            let ns = if userns { r#",{"type":"user"}"# } else { "" };
            serde_json::from_str(&format!(
                r#"{{"ociVersion":"1.0.2","process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}},"capabilities":{{"bounding":[{caps}]}}}},"linux":{{"namespaces":[{{"type":"pid"}}{ns}]}}}}"#
            ))
            .unwrap()
        };
        let plain = spec(r#""CAP_KILL""#, false);
        let ptrace = spec(r#""CAP_KILL","CAP_SYS_PTRACE""#, false);
        let userns = spec(r#""CAP_SYS_PTRACE""#, true);
        let p = |s: &oci_spec::runtime::Spec| s.process().clone().unwrap();
        assert!(!exec_exposes_runtime(&plain, &p(&plain), false));
        assert!(exec_exposes_runtime(&plain, &p(&plain), true), "an earlier exec had it");
        assert!(exec_exposes_runtime(&plain, &p(&ptrace), false), "this exec asks for it");
        assert!(exec_exposes_runtime(&ptrace, &p(&plain), false), "the init may have it");
        assert!(!exec_exposes_runtime(&userns, &p(&userns), true), "never across a user namespace");
    }

    #[test]
    fn test_binary_is_not_sealed() {
        assert!(!is_sealed());
    }
}
