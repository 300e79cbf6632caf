//! Linux security modules: `process.apparmorProfile`, `process.selinuxLabel`
//! and `linux.mountLabel`.
//!
//! Where the host runs the module, the profile or label is set as the exec
//! attribute of the container's process (`/proc/thread-self/attr/...`), so
//! the kernel confines the program from its `execve` on, as runc does.
//! Where it does not, a config that asks for one is refused when it is
//! loaded, naming the field: a container must never run unconfined while its
//! config says it is confined. runc 1.1.5 refuses the same configs on such a
//! host (the profile write fails in its init, the SELinux label at
//! validation, the mount label when the `context=` mount fails).
//!
//! `linux.mountLabel` on a host that runs SELinux is refused too: this build
//! does not add `context=` to the container's mounts. On a host without
//! SELinux it is accepted and has no effect, as crun does (runc 1.1.5 fails
//! when the kernel refuses its `context=` mount option): a file label is
//! only read by an SELinux policy, so no process is less confined than its
//! config says (runtime-tools' linux_mount_label sets one on such hosts).

use std::io::Write;
use std::path::Path;

use oci_spec::runtime::Spec;

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

/// Whether SELinux is enabled on this host (its filesystem is mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Refuse what this host or build cannot apply: (field, reason).
pub fn validate(spec: &Spec) -> Result<(), (String, String)> {
    let process = spec.process().as_ref();
    if let Some(p) = process.and_then(|p| set(p.apparmor_profile())) {
        if !apparmor_enabled() {
            return Err(("process.apparmorProfile".into(), format!("{p:?}: AppArmor is not enabled on this host")));
        }
    }
    if let Some(l) = process.and_then(|p| set(p.selinux_label())) {
        if !selinux_enabled() {
            return Err(("process.selinuxLabel".into(), format!("{l:?}: SELinux is not enabled on this host")));
        }
    }
    if let Some(l) = spec.linux().as_ref().and_then(|l| set(l.mount_label())) {
        if selinux_enabled() {
            let reason = "SELinux mount labels are not supported by this build";
            return Err(("linux.mountLabel".into(), format!("{l:?}: {reason}")));
        }
        tracing::debug!(label = l, "linux.mountLabel has no effect: SELinux is not enabled on this host");
    }
    Ok(())
}

/// Check a process of `exec --process` (the fields below `process`).
pub fn validate_process(p: &oci_spec::runtime::Process) -> Result<(), (String, String)> {
    if let Some(a) = set(p.apparmor_profile()) {
        if !apparmor_enabled() {
            return Err(("apparmorProfile".into(), format!("{a:?}: AppArmor is not enabled on this host")));
        }
    }
    if let Some(l) = set(p.selinux_label()) {
        if !selinux_enabled() {
            return Err(("selinuxLabel".into(), format!("{l:?}: SELinux is not enabled on this host")));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("apply {field} {value:?}: write {path}: {source}")]
pub struct Error {
    pub field: &'static str,
    pub value: String,
    pub path: &'static str,
    pub source: std::io::Error,
}

/// Set the exec profile and label of the calling thread: they take effect
/// at its next `execve`. Called last before the program is executed.
pub fn apply_exec(p: &oci_spec::runtime::Process) -> Result<(), Error> {
    if let Some(profile) = set(p.apparmor_profile()) {
        // The AppArmor-specific file first (stacked LSMs), then the shared one.
        let text = format!("exec {profile}");
        let mut last = None;
        for path in ["/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec"] {
            match write_attr(path, &text) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some((path, e)),
            }
        }
        if let Some((path, source)) = last {
            return Err(Error { field: "process.apparmorProfile", value: profile.into(), path, source });
        }
    }
    if let Some(label) = set(p.selinux_label()) {
        let path = "/proc/thread-self/attr/exec";
        write_attr(path, label).map_err(|source| Error { field: "process.selinuxLabel", value: label.into(), path, source })?;
    }
    Ok(())
}

/// Write an attribute file, making sure it is the kernel's procfs (the
/// container's rootfs may hold anything at /proc).
fn write_attr(path: &str, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let fs = nix::sys::statfs::fstatfs(&f)?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(std::io::Error::other("not on procfs"));
    }
    f.write_all(text.as_bytes())
}
