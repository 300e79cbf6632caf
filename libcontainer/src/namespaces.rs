//! Which namespaces a container gets: new ones made by `clone`, existing
//! ones (given by `path`) joined with `setns`.
//!
//! Joined namespaces are opened by the runtime before the clone, in its own
//! mount namespace, so a path like `/proc/123/ns/net` means what the caller
//! meant. PID and time namespaces only apply to children of the caller, so
//! the runtime enters them itself just around the clone (`for_children`),
//! which spares a second fork. The init joins the others first thing, user
//! namespace first, mount namespace last among them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use std::collections::HashMap;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, LinuxTimeOffset};

use crate::sys::CLONE_NEWTIME;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("open {kind} namespace {path}: {source}")]
    Open { kind: String, path: PathBuf, source: nix::Error },
    #[error("join {kind} namespace {path}: {source}")]
    Join { kind: String, path: PathBuf, source: nix::Error },
    #[error("{op} {kind} namespace: {source}")]
    Other { op: &'static str, kind: String, source: nix::Error },
}

/// The clone flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> u64 {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS.bits() as u64,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP.bits() as u64,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS.bits() as u64,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC.bits() as u64,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER.bits() as u64,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID.bits() as u64,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET.bits() as u64,
        LinuxNamespaceType::Time => CLONE_NEWTIME,
    }
}

/// Order in which the init joins existing namespaces.
const JOIN_ORDER: [LinuxNamespaceType; 6] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// An existing namespace to enter.
#[derive(Debug)]
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The namespace plan of one container.
#[derive(Debug, Default)]
pub struct Plan {
    /// `CLONE_NEW*` flags for the clone (all new namespaces but cgroup).
    pub clone_flags: u64,
    /// A new cgroup namespace, made by the init once it is in its cgroup,
    /// so the namespace's root is the container's cgroup.
    pub new_cgroup: bool,
    /// Whether the container has a cgroup namespace (new or joined).
    pub has_cgroup: bool,
    /// The container has a user namespace (new or joined): the init takes
    /// uid and gid 0 in it before anything else.
    pub has_user: bool,
    /// A new user namespace, whose mappings the runtime writes after the
    /// clone and before `Proceed`.
    pub new_user: bool,
    /// The user namespace to join was entered by the process that cloned
    /// the init (so the init's new namespaces are owned by it); the init
    /// only becomes root in it.
    pub user_entered_by_parent: bool,
    /// A new time namespace: made by the init with `unshare`, so its clock
    /// offsets can be written before any process is in it; the init's
    /// `execve` then moves it in.
    pub new_time: bool,
    /// `linux.timeOffsets` as the lines of `/proc/self/timens_offsets`.
    pub time_offsets: Vec<String>,
    /// Joined by the init, in [`JOIN_ORDER`].
    pub join: Vec<Join>,
    /// Entered by the runtime around the clone.
    pub for_children: Vec<Join>,
}

impl Plan {
    /// Open every namespace to join; fails naming the path that cannot be.
    pub fn new(namespaces: &[LinuxNamespace], time_offsets: Option<&HashMap<String, LinuxTimeOffset>>) -> Result<Plan, Error> {
        let mut plan = Plan::default();
        let mut offsets: Vec<_> = time_offsets.into_iter().flatten().collect();
        offsets.sort_by(|a, b| a.0.cmp(b.0));
        plan.time_offsets = offsets
            .into_iter()
            .map(|(clock, o)| format!("{clock} {} {}", o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)))
            .collect();
        for ns in namespaces {
            let kind = ns.typ();
            if kind == LinuxNamespaceType::Cgroup {
                plan.has_cgroup = true;
            }
            if kind == LinuxNamespaceType::User {
                plan.has_user = true;
                plan.new_user = ns.path().is_none();
            }
            match ns.path() {
                None => {
                    if kind == LinuxNamespaceType::Cgroup {
                        plan.new_cgroup = true;
                    } else if kind == LinuxNamespaceType::Time {
                        plan.new_time = true;
                    } else {
                        plan.clone_flags |= clone_flag(kind);
                    }
                }
                Some(path) => {
                    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|source| Error::Open {
                        kind: kind.to_string(),
                        path: path.clone(),
                        source,
                    })?;
                    let join = Join { kind, path: path.clone(), fd };
                    if matches!(kind, LinuxNamespaceType::Pid | LinuxNamespaceType::Time) {
                        plan.for_children.push(join);
                    } else {
                        plan.join.push(join);
                    }
                }
            }
        }
        plan.join.sort_by_key(|j| JOIN_ORDER.iter().position(|k| *k == j.kind));
        Ok(plan)
    }

    /// In the init: enter the namespaces to join (a user namespace first,
    /// then become root in it), then make the new cgroup and time
    /// namespaces.
    pub fn enter(&self) -> Result<(), Error> {
        if self.user_entered_by_parent {
            become_root()?;
        }
        for j in &self.join {
            if j.kind == LinuxNamespaceType::User && self.user_entered_by_parent {
                continue;
            }
            tracing::debug!(kind = %j.kind, path = %j.path.display(), "setns");
            setns(j.fd.as_fd(), CloneFlags::from_bits_retain(clone_flag(j.kind) as i32)).map_err(|source| Error::Join {
                kind: j.kind.to_string(),
                path: j.path.clone(),
                source,
            })?;
            if j.kind == LinuxNamespaceType::User {
                become_root()?;
            }
        }
        if self.new_user {
            become_root()?;
        }
        if self.new_cgroup {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|source| Error::Other {
                op: "create",
                kind: "cgroup".into(),
                source,
            })?;
        }
        if self.new_time {
            nix::sched::unshare(CloneFlags::from_bits_retain(CLONE_NEWTIME as i32)).map_err(|source| Error::Other {
                op: "create",
                kind: "time".into(),
                source,
            })?;
            if !self.time_offsets.is_empty() {
                let text = self.time_offsets.join("\n") + "\n";
                tracing::debug!(offsets = %text, "write time namespace offsets");
                std::fs::write("/proc/self/timens_offsets", text).map_err(|e| Error::Other {
                    op: "write linux.timeOffsets of",
                    kind: "time".into(),
                    source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                })?;
            }
        }
        Ok(())
    }
}

/// The runtime's own PID and time namespaces for its future children, held
/// while it clones into the namespaces of [`Plan::for_children`]; dropping
/// it switches back.
pub struct ForChildren {
    saved: Vec<(LinuxNamespaceType, OwnedFd)>,
}

impl ForChildren {
    pub fn enter(plan: &Plan) -> Result<ForChildren, Error> {
        let mut saved = Vec::new();
        for j in &plan.for_children {
            let own = match j.kind {
                LinuxNamespaceType::Pid => "/proc/self/ns/pid_for_children",
                _ => "/proc/self/ns/time_for_children",
            };
            let fd = open(own, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|source| Error::Open {
                kind: j.kind.to_string(),
                path: own.into(),
                source,
            })?;
            saved.push((j.kind, fd));
            tracing::debug!(kind = %j.kind, path = %j.path.display(), "setns for children");
            setns(j.fd.as_fd(), CloneFlags::from_bits_retain(clone_flag(j.kind) as i32)).map_err(|source| Error::Join {
                kind: j.kind.to_string(),
                path: j.path.clone(),
                source,
            })?;
        }
        Ok(ForChildren { saved })
    }
}

impl Drop for ForChildren {
    fn drop(&mut self) {
        for (kind, fd) in self.saved.drain(..) {
            if let Err(e) = setns(fd.as_fd(), CloneFlags::from_bits_retain(clone_flag(kind) as i32)) {
                tracing::warn!(%kind, error = %e, "could not return to the runtime's namespace");
            }
        }
    }
}

/// Take uid and gid 0 of the user namespace just entered (its mappings are
/// written), so the setup that follows runs as the namespace's root.
fn become_root() -> Result<(), Error> {
    let err = |op| move |source| Error::Other { op, kind: "user".into(), source };
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map_err(err("become gid 0 in"))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(err("become uid 0 in"))?;
    Ok(())
}

/// The text of a `uid_map`/`gid_map` file for `maps`.
pub fn id_map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}

/// Write the id mappings of the new user namespace of `pid` (from the
/// runtime, which holds CAP_SETUID and CAP_SETGID over the namespace's parent).
pub fn write_id_maps(pid: nix::unistd::Pid, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<(), Error> {
    // Without CAP_SETGID a gid map may only be written once setgroups(2)
    // is disabled in the namespace (user_namespaces(7)).
    if !nix::unistd::geteuid().is_root() {
        let path = PathBuf::from(format!("/proc/{pid}/setgroups"));
        std::fs::write(&path, "deny").map_err(|e| Error::Open {
            kind: "user (setgroups)".into(),
            path,
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    }
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        let text = id_map_text(maps);
        tracing::debug!(path = %path.display(), map = %text, "write id map");
        std::fs::write(&path, text).map_err(|e| Error::Open {
            kind: format!("user ({file}, check linux.{}Mappings)", &file[..3]),
            path: path.clone(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    }
    Ok(())
}

/// A user namespace with the given mappings, for idmapped mounts: made by
/// a child that only exists until the namespace is opened.
pub fn userns_with_maps(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd, Error> {
    let flags = CloneFlags::CLONE_NEWUSER.bits() as u64;
    let child = crate::sys::clone_process(flags, None, &mut [], || loop {
        nix::unistd::pause();
    })
    .map_err(|e| Error::Other {
        op: "create",
        kind: "user (for an idmapped mount)".into(),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let result = write_id_maps(child.pid, uid, gid).and_then(|()| {
        let path = PathBuf::from(format!("/proc/{}/ns/user", child.pid));
        open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|source| Error::Open {
            kind: "user".into(),
            path,
            source,
        })
    });
    let _ = crate::sys::kill(child.pid, libc::SIGKILL);
    let _ = nix::sys::wait::waitpid(child.pid, None);
    result
}

impl Plan {
    /// The user namespace to join, if the container joins one by path.
    pub fn joined_user(&self) -> Option<&Join> {
        self.join.iter().find(|j| j.kind == LinuxNamespaceType::User)
    }
}

/// The `uid_map` and `gid_map` of the user namespace open as `userns`, read
/// from inside it by a short-lived child.
pub fn user_ns_maps(userns: BorrowedFd<'_>) -> Result<(String, String), Error> {
    let (rd, wr) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| Error::Other { op: "pipe for", kind: "user".into(), source })?;
    let child = crate::sys::clone_process(0, None, &mut [], || {
        if setns(userns, CloneFlags::CLONE_NEWUSER).is_err() {
            return 1;
        }
        let text =
            ["uid_map", "gid_map"].map(|f| std::fs::read_to_string(format!("/proc/self/{f}")).unwrap_or_default()).join("\0");
        let mut w = std::fs::File::from(wr.try_clone().expect("dup pipe"));
        use std::io::Write;
        i32::from(w.write_all(text.as_bytes()).is_err())
    })
    .map_err(|e| Error::Other {
        op: "read the mappings of",
        kind: "user".into(),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    drop(wr);
    let mut text = String::new();
    use std::io::Read;
    let _ = std::fs::File::from(rd).read_to_string(&mut text);
    let _ = nix::sys::wait::waitpid(child.pid, None);
    let (uid, gid) = text.split_once('\0').ok_or_else(|| Error::Other {
        op: "read the mappings of",
        kind: "user".into(),
        source: nix::Error::EPERM,
    })?;
    Ok((uid.to_owned(), gid.to_owned()))
}

/// Mapping text compared field by field, whatever the spacing.
pub fn same_mappings(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect::<Vec<_>>()
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_comparison_ignores_spacing() {
        assert!(same_mappings("         0     100000      65536\n", "0 100000 65536\n"));
        assert!(!same_mappings("0 100000 65536\n", "0 100000 1\n"));
    }

    #[test]
    fn map_text() {
        let m: Vec<LinuxIdMapping> =
            serde_json::from_str(r#"[{"containerID":0,"hostID":100000,"size":65536},{"containerID":65536,"hostID":5,"size":1}]"#)
                .unwrap();
        assert_eq!(id_map_text(&m), "0 100000 65536\n65536 5 1\n");
    }
}
