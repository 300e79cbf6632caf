//! Loading and validating a bundle's `config.json`.
//!
//! Everything that can be checked before any kernel object exists is checked
//! here, so a bad config fails before `create` has made a state directory,
//! a cgroup or a process. Each error names the field (as a JSON path such as
//! `process.rlimits[1].type`) or the file.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse {path}: {field}: {message}")]
    Parse { path: PathBuf, field: String, message: String },
    #[error("{path}: {field}: {reason}")]
    Invalid { path: PathBuf, field: String, reason: String },
    #[error("invalid container id {id:?}: {reason}")]
    Id { id: String, reason: &'static str },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A parsed and validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The container's root filesystem, absolute and canonical.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// config.json as read, kept in the container's state as it is.
    pub raw: Vec<u8>,
}

/// Read `config.json` from `bundle` and validate it.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(bundle).map_err(|source| Error::Read { path: bundle.to_owned(), source })?;
    let path = dir.join("config.json");
    let data = std::fs::read(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
    let spec = parse(&path, &data)?;
    let rootfs = validate(&path, &dir, &spec)?;
    Ok(Bundle { dir, rootfs, spec, raw: data })
}

/// Deserialize a config, reporting the JSON path of the offending field.
///
/// A valid config takes the plain decoder; only a failing one is decoded
/// again with path tracking (whose code is large: keeping it off the usual
/// path keeps it out of memory).
pub fn parse(path: &Path, data: &[u8]) -> Result<Spec> {
    if let Ok(spec) = crate::attrs::sched::decode(data, "/process/scheduler") {
        return Ok(spec);
    }
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { "config".to_string() } else { field };
        Error::Parse { path: path.to_owned(), field, message: e.into_inner().to_string() }
    })
}

/// Check what the types alone do not; returns the resolved rootfs path.
pub fn validate(path: &Path, bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let invalid = |field: &str, reason: String| Error::Invalid { path: path.to_owned(), field: field.to_owned(), reason };

    let version = spec.version();
    if version.is_empty() {
        return Err(invalid("ociVersion", "missing: the runtime-spec version this config follows is required".into()));
    }
    if !version.starts_with("1.") {
        return Err(invalid("ociVersion", format!("{version:?} is not a 1.x runtime-spec version")));
    }

    let root = spec.root().as_ref().ok_or_else(|| invalid("root", "missing".into()))?;
    let rootfs = if root.path().is_absolute() { root.path().clone() } else { bundle.join(root.path()) };
    let rootfs = rootfs.canonicalize().map_err(|e| invalid("root.path", format!("{}: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(invalid("root.path", format!("{} is not a directory", rootfs.display())));
    }

    let process = spec.process().as_ref().ok_or_else(|| invalid("process", "missing".into()))?;
    validate_process(process).map_err(|(field, reason)| invalid(&format!("process.{field}"), reason))?;

    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let (uid, gid) = (m.uid_mappings().as_deref().unwrap_or_default(), m.gid_mappings().as_deref().unwrap_or_default());
        if !uid.is_empty() || !gid.is_empty() {
            if uid.is_empty() || gid.is_empty() {
                return Err(invalid(&format!("mounts[{i}]"), "an idmapped mount needs both uidMappings and gidMappings".into()));
            }
            let bind = m.typ().as_deref() == Some("bind") || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind");
            if !bind {
                return Err(invalid(&format!("mounts[{i}].uidMappings"), "only bind mounts can be idmapped".into()));
            }
            for (field, maps) in [("uidMappings", uid), ("gidMappings", gid)] {
                check_mappings(maps).map_err(|(j, reason)| invalid(&format!("mounts[{i}].{field}[{j}]"), reason))?;
            }
        }
        if !m.destination().is_absolute() {
            return Err(invalid(
                &format!("mounts[{i}].destination"),
                format!("{} is not an absolute path", m.destination().display()),
            ));
        }
    }

    let linux = spec.linux().as_ref().ok_or_else(|| invalid("linux", "missing".into()))?;
    crate::attrs::validate_linux(linux).map_err(|(field, reason)| invalid(&format!("linux.{field}"), reason))?;
    crate::lsm::validate(spec).map_err(|(field, reason)| invalid(&field, reason))?;
    crate::intelrdt::validate(linux).map_err(|(field, reason)| invalid(&field, reason))?;
    crate::netdev::validate(linux).map_err(|(field, reason)| invalid(&field, reason))?;
    let mut types = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !types.insert(ns.typ()) {
            return Err(invalid(&format!("linux.namespaces[{i}].type"), format!("{} given twice", ns.typ())));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(invalid(&format!("linux.namespaces[{i}].path"), format!("{} is not absolute", p.display())));
            }
            if let Err(e) = std::fs::metadata(p) {
                return Err(invalid(&format!("linux.namespaces[{i}].path"), format!("{}: {e}", p.display())));
            }
        }
    }
    // Without a mount namespace the rootfs is set up in the runtime's (see
    // rootfs/mod.rs): nothing may change that namespace's own mounts, so
    // what works on paths outside the rootfs, or on `/` itself, is refused.
    let has_new_or_joined = |t: LinuxNamespaceType| types.contains(&t);
    if !has_new_or_joined(LinuxNamespaceType::Mount) {
        for (field, given) in [
            ("linux.maskedPaths", linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty())),
            ("linux.readonlyPaths", linux.readonly_paths().as_ref().is_some_and(|p| !p.is_empty())),
            ("linux.rootfsPropagation", linux.rootfs_propagation().as_ref().is_some_and(|p| !p.is_empty())),
        ] {
            if given {
                return Err(invalid(field, "needs a mount namespace of the container's own (none in linux.namespaces)".into()));
            }
        }
    }
    let new_userns = linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let joined_userns = linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some());
    for (field, maps) in [("linux.uidMappings", linux.uid_mappings()), ("linux.gidMappings", linux.gid_mappings())] {
        let maps = maps.as_deref().unwrap_or_default();
        if new_userns && maps.is_empty() {
            return Err(invalid(field, "a new user namespace needs mappings".into()));
        }
        // With a joined namespace, mappings may be given (containerd and
        // CRI-O send them); create checks they are the namespace's own.
        if !new_userns && !joined_userns && !maps.is_empty() {
            return Err(invalid(field, "mappings need a user namespace".into()));
        }
        check_mappings(maps).map_err(|(i, reason)| invalid(&format!("{field}[{i}]"), reason))?;
    }
    if new_userns {
        let u = process.user();
        let mapped = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>, id: u32| {
            maps.iter().flatten().any(|m| id >= m.container_id() && (id - m.container_id()) < m.size())
        };
        if !mapped(linux.uid_mappings(), u.uid()) {
            return Err(invalid("process.user.uid", format!("{} is not mapped by linux.uidMappings", u.uid())));
        }
        if !mapped(linux.gid_mappings(), u.gid()) {
            return Err(invalid("process.user.gid", format!("{} is not mapped by linux.gidMappings", u.gid())));
        }
        for g in u.additional_gids().iter().flatten() {
            if !mapped(linux.gid_mappings(), *g) {
                return Err(invalid("process.user.additionalGids", format!("{g} is not mapped by linux.gidMappings")));
            }
        }
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has_new_or_joined(LinuxNamespaceType::Uts) {
        return Err(invalid("hostname", "setting the hostname needs a private uts namespace".into()));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has_new_or_joined(LinuxNamespaceType::Uts) {
        return Err(invalid("domainname", "setting the domainname needs a private uts namespace".into()));
    }
    for (key, _) in linux.sysctl().iter().flatten() {
        check_sysctl(key, &types).map_err(|reason| invalid(&format!("linux.sysctl.{key}"), reason))?;
    }
    for (i, dev) in linux.devices().iter().flatten().enumerate() {
        if dev.typ() == LinuxDeviceType::A {
            return Err(invalid(&format!("linux.devices[{i}].type"), "\"a\" is not a device node type (b, c, u or p)".into()));
        }
        if !dev.path().is_absolute() || dev.path().components().any(|c| c == Component::ParentDir) {
            return Err(invalid(
                &format!("linux.devices[{i}].path"),
                format!("{} must be an absolute path without ..", dev.path().display()),
            ));
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !p.is_empty() && crate::rootfs::propagation_flag(p).is_none() {
            return Err(invalid("linux.rootfsPropagation", format!("unknown propagation {p:?}")));
        }
    }
    // A relative path is taken relative to the container's root, as runc does.
    for (field, list) in [("linux.maskedPaths", linux.masked_paths()), ("linux.readonlyPaths", linux.readonly_paths())] {
        for (i, p) in list.iter().flatten().enumerate() {
            if p.is_empty() {
                return Err(invalid(&format!("{field}[{i}]"), "the path is empty".into()));
            }
        }
    }
    if let Some(offsets) = linux.time_offsets() {
        if !offsets.is_empty() && !types.contains(&LinuxNamespaceType::Time) {
            return Err(invalid("linux.timeOffsets", "clock offsets need a time namespace".into()));
        }
        if linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_some())
            && !offsets.is_empty()
        {
            return Err(invalid("linux.timeOffsets", "offsets cannot be set on a time namespace that is joined".into()));
        }
        for clock in offsets.keys() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(invalid(
                    &format!("linux.timeOffsets.{clock}"),
                    "only monotonic and boottime clocks have offsets".into(),
                ));
            }
        }
    }
    Ok(rootfs)
}

/// Check a process (of config.json or `exec --process`); the error is the
/// field below `process` and the reason.
pub fn validate_process(process: &oci_spec::runtime::Process) -> std::result::Result<(), (String, String)> {
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(("args".into(), "must name the program to run".into())),
    }
    if !process.cwd().is_absolute() {
        return Err(("cwd".into(), format!("{} is not an absolute path", process.cwd().display())));
    }
    if let Some(rlimits) = process.rlimits() {
        let mut seen = Vec::new();
        for (i, rl) in rlimits.iter().enumerate() {
            if seen.contains(&rl.typ()) {
                return Err((format!("rlimits[{i}].type"), format!("{:?} given twice", rl.typ())));
            }
            seen.push(rl.typ());
            if rl.soft() > rl.hard() {
                return Err((format!("rlimits[{i}]"), format!("soft limit {} is above hard limit {}", rl.soft(), rl.hard())));
            }
        }
    }
    if let Some(env) = process.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') || e.starts_with('=') || e.contains('\0') {
                return Err((format!("env[{i}]"), format!("{e:?} is not NAME=VALUE")));
            }
        }
    }
    if let Some(size) = process.console_size() {
        if size.height() > u16::MAX as u64 || size.width() > u16::MAX as u64 {
            return Err(("consoleSize".into(), "height and width must fit in 16 bits".into()));
        }
    }
    crate::attrs::validate_process(process)?;
    Ok(())
}

/// Mappings must be non-empty ranges that do not overlap on either side
/// (the kernel refuses overlapping ones).
fn check_mappings(maps: &[oci_spec::runtime::LinuxIdMapping]) -> std::result::Result<(), (usize, String)> {
    for (i, m) in maps.iter().enumerate() {
        if m.size() == 0 {
            return Err((i, "size is 0".into()));
        }
        if m.container_id().checked_add(m.size()).is_none() || m.host_id().checked_add(m.size()).is_none() {
            return Err((i, "range overflows 32 bits".into()));
        }
        for (j, o) in maps.iter().enumerate().take(i) {
            let overlap = |a: u32, b: u32| a < b + o.size() && b < a + m.size();
            if overlap(m.container_id(), o.container_id()) || overlap(m.host_id(), o.host_id()) {
                return Err((i, format!("overlaps entry {j}")));
            }
        }
    }
    Ok(())
}

/// Only namespaced sysctls may be set, and only when the container has the
/// namespace (of `ns`, new or joined) that scopes them (as runc enforces).
pub fn check_sysctl(key: &str, ns: &HashSet<LinuxNamespaceType>) -> std::result::Result<(), String> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.contains("..") || key.contains('/') && key.contains('.') {
        return Err("malformed key".into());
    }
    let key_dots = key.replace('/', ".");
    let need = |t: LinuxNamespaceType, what: &str| {
        if ns.contains(&t) {
            Ok(())
        } else {
            Err(format!("needs a private {what} namespace"))
        }
    };
    if IPC.contains(&key_dots.as_str()) || key_dots.starts_with("fs.mqueue.") {
        return need(LinuxNamespaceType::Ipc, "ipc");
    }
    if key_dots.starts_with("net.") {
        return need(LinuxNamespaceType::Network, "network");
    }
    if key_dots == "kernel.hostname" || key_dots == "kernel.domainname" {
        return need(LinuxNamespaceType::Uts, "uts");
    }
    Err("not a namespaced sysctl; it would change the host".into())
}

/// Container ids follow runc's rule: letters, digits, `_ + - .`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| Err(Error::Id { id: id.to_owned(), reason });
    if id.is_empty() {
        return bad("empty");
    }
    if id == "." || id == ".." {
        return bad("\".\" and \"..\" are not ids");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b)) {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(rootfs: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"{rootfs}"}},
            "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
            "linux":{{"namespaces":[{{"type":"mount"}},{{"type":"uts"}}]}}}}"#
        )
    }

    fn check(json: &str) -> Result<PathBuf> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let p = dir.path().join("config.json");
        let spec = parse(&p, json.as_bytes())?;
        validate(&p, dir.path(), &spec)
    }

    #[test]
    fn minimal_config_is_valid() {
        let rootfs = check(&minimal("rootfs")).unwrap();
        assert!(rootfs.ends_with("rootfs"));
    }

    #[test]
    fn wrong_type_names_field() {
        let json = minimal("rootfs").replace(r#""args":["sh"]"#, r#""args":"sh""#);
        let err = check(&json).unwrap_err().to_string();
        assert!(err.contains("process.args"), "{err}");
    }

    #[test]
    fn malformed_json_is_an_error() {
        let err = check("{\"ociVersion\": ").unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn missing_version_is_rejected() {
        let json = minimal("rootfs").replace(r#""ociVersion":"1.0.2","#, "");
        let err = check(&json).unwrap_err().to_string();
        assert!(err.contains("ociVersion"), "{err}");
    }

    #[test]
    fn missing_rootfs_names_root_path() {
        let err = check(&minimal("nope")).unwrap_err().to_string();
        assert!(err.contains("root.path"), "{err}");
    }

    #[test]
    fn unknown_namespace_names_field() {
        let json = minimal("rootfs").replace(r#"{"type":"uts"}"#, r#"{"type":"bogus"}"#);
        let err = check(&json).unwrap_err().to_string();
        assert!(err.contains("linux.namespaces[1].type"), "{err}");
    }

    #[test]
    fn invalid_rlimit_names_field() {
        let json =
            minimal("rootfs").replace(r#""cwd":"/""#, r#""cwd":"/","rlimits":[{"type":"RLIMIT_BOGUS","soft":1,"hard":1}]"#);
        let err = check(&json).unwrap_err().to_string();
        assert!(err.contains("process.rlimits[0].type"), "{err}");
        let json =
            minimal("rootfs").replace(r#""cwd":"/""#, r#""cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":1}]"#);
        let err = check(&json).unwrap_err().to_string();
        assert!(err.contains("process.rlimits[0]"), "{err}");
    }

    #[test]
    fn hostname_needs_uts() {
        let json = minimal("rootfs")
            .replace(r#",{"type":"uts"}"#, "")
            .replace(r#""ociVersion":"1.0.2","#, r#""ociVersion":"1.0.2","hostname":"x","#);
        let err = check(&json).unwrap_err().to_string();
        assert!(err.contains("hostname"), "{err}");
    }

    #[test]
    fn sysctl_rules() {
        let ns: HashSet<_> = [LinuxNamespaceType::Network, LinuxNamespaceType::Ipc].into();
        assert!(check_sysctl("net.ipv4.ip_forward", &ns).is_ok());
        assert!(check_sysctl("kernel.shmmax", &ns).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", &ns).is_ok());
        assert!(check_sysctl("kernel.hostname", &ns).is_err());
        assert!(check_sysctl("vm.swappiness", &ns).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", &HashSet::new()).is_err());
        assert!(check_sysctl("net/../../etc", &ns).is_err());
    }

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
