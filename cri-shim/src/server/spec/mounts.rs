//! A container's mounts, as containerd's `WithMounts`: the CRI mounts, then the runtime's own
//! (the pod's `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, `/dev/shm`, the image's
//! volumes) unless a CRI mount has the same destination; sorted by depth so a mount never hides
//! a deeper one; the default mounts minus those a given mount replaces (all of `/dev/...` when
//! `/dev` itself is given), plus `/sys/fs/cgroup` read-only.
//!
//! Each is an `rbind` of the host path with symlinks resolved; `ro` or `rw`; propagation
//! `rprivate`, `rslave` (HOST_TO_CONTAINER: the host path's mount must be shared or a slave, and
//! the rootfs becomes rslave) or `rshared` (BIDIRECTIONAL: the mount must be shared, the rootfs
//! becomes rshared). A host path that does not exist is created by containerd; here it is
//! returned for the caller to create (mode 0755) before the container is created.
//!
//! Differences from containerd 1.6, which did not know the newer fields: `recursive_read_only`
//! gives `rro` (it needs `readonly` and PRIVATE propagation, as containerd 2 checks); mounts with
//! `uidMappings`/`gidMappings` or an `image` are refused as unsupported by this build, never
//! mounted without them; an unknown propagation value is refused (containerd logs and uses
//! rprivate). `selinux_relabel` has no effect without SELinux (see `security.rs`) and is refused
//! on an SELinux host, where this build cannot relabel.

use std::path::{Component, Path, PathBuf};

use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};
use v1::MountPropagation as Propagation;

use super::SpecError;

/// One bind mount to make, from the request or added by the runtime.
#[derive(Debug, Clone)]
pub struct Bind {
    pub container_path: String,
    pub host_path: PathBuf,
    pub readonly: bool,
    pub propagation: Propagation,
    pub recursive_readonly: bool,
    pub selinux_relabel: bool,
    /// The request field it came from (or what added it), for errors.
    pub field: String,
}

/// Lexically cleaned absolute path (Go's `filepath.Clean` for absolute paths).
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Whether `mounts` (CRI mounts) has one at `path` (containerd's `isInCRIMounts`).
pub fn in_cri_mounts(path: &str, mounts: &[v1::Mount]) -> bool {
    let path = clean(path);
    mounts.iter().any(|m| clean(&m.container_path) == path)
}

/// The request's mounts, checked.
pub fn from_request(mounts: &[v1::Mount], prefix: &str, selinux_host: bool) -> Result<Vec<Bind>, SpecError> {
    let mut out = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("{prefix}.mounts[{i}]");
        if m.image.as_ref().is_some_and(|im| !im.image.is_empty()) || !m.image_sub_path.is_empty() {
            return Err(SpecError::unsupported(format!("{field}.image"), "image volumes are not supported by this build"));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(SpecError::unsupported(
                format!("{field}.uidMappings"),
                "idmapped mounts are not supported by this build",
            ));
        }
        if !m.container_path.starts_with('/') {
            return Err(SpecError::invalid(
                format!("{field}.container_path"),
                format!("{:?} is not an absolute path", m.container_path),
            ));
        }
        if m.host_path.is_empty() {
            return Err(SpecError::invalid(format!("{field}.host_path"), "empty"));
        }
        let propagation = Propagation::try_from(m.propagation)
            .map_err(|_| SpecError::invalid(format!("{field}.propagation"), format!("unknown propagation {}", m.propagation)))?;
        if m.recursive_read_only {
            if !m.readonly {
                return Err(SpecError::invalid(format!("{field}.recursive_read_only"), "needs readonly"));
            }
            if propagation != Propagation::PropagationPrivate {
                return Err(SpecError::invalid(format!("{field}.recursive_read_only"), "needs PROPAGATION_PRIVATE"));
            }
        }
        if m.selinux_relabel && selinux_host {
            return Err(SpecError::unsupported(
                format!("{field}.selinux_relabel"),
                "this build cannot relabel on an SELinux host",
            ));
        }
        out.push(Bind {
            container_path: m.container_path.clone(),
            host_path: PathBuf::from(&m.host_path),
            readonly: m.readonly,
            propagation,
            recursive_readonly: m.recursive_read_only,
            selinux_relabel: m.selinux_relabel,
            field,
        });
    }
    Ok(out)
}

/// Add `cri` and the `extra` mounts not overridden by a CRI mount to `spec` (see the module
/// docs); `mountinfo` is the runtime's `/proc/self/mountinfo` text, read when a propagation must
/// be checked. Returns the host paths to create.
pub fn apply(
    spec: &mut Value,
    cri: Vec<Bind>,
    extra: Vec<Bind>,
    mountinfo: &dyn Fn() -> String,
) -> Result<Vec<PathBuf>, SpecError> {
    let mut mounts = cri;
    for e in extra {
        let dest = clean(&e.container_path);
        if !mounts.iter().any(|c| clean(&c.container_path) == dest) {
            mounts.push(e);
        }
    }
    mounts.sort_by_key(|m| clean(&m.container_path).matches('/').count());

    let given: Vec<String> = mounts.iter().map(|m| clean(&m.container_path)).collect();
    let dev_given = given.iter().any(|g| g == "/dev");
    let mut defaults: Vec<Value> = spec["mounts"].as_array().cloned().unwrap_or_default();
    defaults.push(json!({
        "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
    }));
    defaults.retain(|m| {
        let dest = clean(m["destination"].as_str().unwrap_or(""));
        !(given.contains(&dest) || dev_given && dest.starts_with("/dev/"))
    });

    let mut host_dirs = Vec::new();
    let mut rootfs_propagation: Option<&str> = None;
    let mut info: Option<Vec<libcontainer::mountinfo::Entry>> = None;
    for m in mounts {
        let src = match m.host_path.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                host_dirs.push(m.host_path.clone());
                m.host_path.clone()
            }
            Err(source) => return Err(SpecError::Io { op: "resolve the mount source", path: m.host_path.clone(), source }),
        };
        let mut options = vec!["rbind"];
        match m.propagation {
            Propagation::PropagationPrivate => options.push("rprivate"),
            Propagation::PropagationBidirectional => {
                let entries = info.get_or_insert_with(|| libcontainer::mountinfo::parse(&mountinfo()));
                check_propagation(&src, entries, true)
                    .map_err(|r| SpecError::unsupported(format!("{}.propagation", m.field), r))?;
                options.push("rshared");
                rootfs_propagation = Some("rshared");
            }
            Propagation::PropagationHostToContainer => {
                let entries = info.get_or_insert_with(|| libcontainer::mountinfo::parse(&mountinfo()));
                check_propagation(&src, entries, false)
                    .map_err(|r| SpecError::unsupported(format!("{}.propagation", m.field), r))?;
                options.push("rslave");
                if rootfs_propagation != Some("rshared") {
                    rootfs_propagation = Some("rslave");
                }
            }
        }
        options.push(if m.readonly { "ro" } else { "rw" });
        if m.recursive_readonly {
            options.push("rro");
        }
        tracing::trace!(dest = %m.container_path, selinux_relabel = m.selinux_relabel, "bind mount");
        defaults.push(json!({ "destination": m.container_path, "type": "bind", "source": src, "options": options }));
    }
    spec["mounts"] = Value::Array(defaults);
    if let Some(p) = rootfs_propagation {
        spec["linux"]["rootfsPropagation"] = json!(p);
    }
    Ok(host_dirs)
}

/// The mount `path` lies on must be shared (`shared_only`), or shared or a slave. A path that
/// does not exist yet is looked up through its nearest existing ancestor.
pub fn check_propagation(path: &Path, entries: &[libcontainer::mountinfo::Entry], shared_only: bool) -> Result<(), String> {
    let depth = |p: &Path| p.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let entry = entries
        .iter()
        .filter(|e| path.starts_with(&e.mount_point))
        .max_by_key(|e| depth(&e.mount_point))
        .ok_or_else(|| format!("no mount holds {}", path.display()))?;
    let shared = entry.optional.iter().any(|o| o.starts_with("shared:"));
    let slave = entry.optional.iter().any(|o| o.starts_with("master:"));
    if shared || (!shared_only && slave) {
        return Ok(());
    }
    let want = if shared_only { "a shared mount" } else { "a shared or slave mount" };
    Err(format!("{} is on the mount {}, which is not {want}", path.display(), entry.mount_point.display()))
}
