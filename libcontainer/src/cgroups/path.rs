//! `linux.cgroupsPath` → the container's cgroup in each hierarchy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::layout::{parse_proc_cgroup, Hierarchy, Layout};
use super::{Error, Result, PROC_SELF_CGROUP};

const FIELD: &str = "linux.cgroupsPath";

/// A container's cgroup: a clean absolute path below each hierarchy's
/// mountpoint, the same in every hierarchy except those listed in
/// [`CgroupPath::per_hierarchy`].
///
/// The exceptions exist because a relative `cgroupsPath` goes under the
/// caller's own cgroup in each hierarchy, as with runc, and a process's v1
/// cgroups need not agree (on this project's test host a shell is in
/// `memory:/process_api/<id>` and `/` elsewhere). Saved in the container's
/// state: it serialises as a plain JSON string when there are no exceptions,
/// as `{"path": ..., "per_hierarchy": {"memory": ...}}` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub struct CgroupPath {
    path: String,
    per_hierarchy: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Repr {
    Uniform(String),
    PerHierarchy { path: String, per_hierarchy: BTreeMap<String, String> },
}

impl TryFrom<Repr> for CgroupPath {
    type Error = Error;
    fn try_from(r: Repr) -> Result<Self> {
        let (path, per_hierarchy) = match r {
            Repr::Uniform(path) => (path, BTreeMap::new()),
            Repr::PerHierarchy { path, per_hierarchy } => (path, per_hierarchy),
        };
        let mut p = CgroupPath::new(&path)?;
        for (key, path) in per_hierarchy {
            let clean = CgroupPath::new(&path)?.path;
            if clean != p.path {
                p.per_hierarchy.insert(key, clean);
            }
        }
        Ok(p)
    }
}

impl From<CgroupPath> for Repr {
    fn from(p: CgroupPath) -> Repr {
        if p.per_hierarchy.is_empty() {
            Repr::Uniform(p.path)
        } else {
            Repr::PerHierarchy { path: p.path, per_hierarchy: p.per_hierarchy }
        }
    }
}

impl CgroupPath {
    /// The same absolute path in every hierarchy, cleaned; `..` may not climb
    /// above `/`, and the root cgroup itself is refused.
    pub fn new(path: &str) -> Result<CgroupPath> {
        check_chars(path)?;
        if !path.starts_with('/') {
            return Err(invalid(format!("{path:?} is not absolute")));
        }
        let parts = clean(path).ok_or_else(|| invalid(format!("{path:?} climbs above the root cgroup")))?;
        Ok(CgroupPath { path: absolute(&parts)?, per_hierarchy: BTreeMap::new() })
    }

    /// The path in hierarchies without an exception.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Exceptions, keyed by [`Hierarchy::key`] (`memory`, `cpu,cpuacct`,
    /// `name=systemd`, empty for cgroup2).
    pub fn per_hierarchy(&self) -> &BTreeMap<String, String> {
        &self.per_hierarchy
    }

    /// The path in one hierarchy.
    pub fn in_hierarchy(&self, h: &Hierarchy) -> &str {
        self.per_hierarchy.get(&h.key()).map_or(&self.path, String::as_str)
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if !self.per_hierarchy.is_empty() {
            let list: Vec<String> = self.per_hierarchy.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            write!(f, " ({})", list.join(", "))?;
        }
        Ok(())
    }
}

/// Whether resolving `cgroups_path` reads the caller's own cgroups.
pub(super) fn needs_own_cgroup(cgroups_path: Option<&str>) -> bool {
    !cgroups_path.is_some_and(|p| p.starts_with('/'))
}

impl Layout {
    /// [`super::resolve_path`] with the text of `/proc/self/cgroup` given
    /// (only read when the path is relative or empty).
    pub fn resolve_path(&self, cgroups_path: Option<&str>, container_id: &str, proc_self_cgroup: &str) -> Result<CgroupPath> {
        let raw = match cgroups_path {
            Some(p) if !p.is_empty() => p,
            _ => container_id,
        };
        if raw.starts_with('/') {
            return CgroupPath::new(raw);
        }
        check_chars(raw)?;
        if looks_like_systemd(raw) {
            return Err(invalid(format!(
                "{raw:?} is a systemd-style slice:prefix:name; roci manages cgroups itself (cgroupfs driver), give a path"
            )));
        }
        let inner = clean(raw).ok_or_else(|| invalid(format!("{raw:?} climbs out of the caller's cgroup")))?;
        if inner.is_empty() {
            return Err(invalid(format!("{raw:?} names the caller's own cgroup")));
        }
        let own = parse_proc_cgroup(proc_self_cgroup, Path::new(PROC_SELF_CGROUP))?;
        let mut resolved = Vec::with_capacity(self.hierarchies.len());
        for h in &self.hierarchies {
            let key = h.key();
            let mine = own.iter().find(|o| same_controllers(&o.key, &key)).ok_or_else(|| {
                invalid(format!("{raw:?} is relative, and {PROC_SELF_CGROUP} has no entry for hierarchy {:?}", key))
            })?;
            let below_mount = strip_root(&mine.path, &h.root).ok_or_else(|| {
                invalid(format!(
                    "{raw:?} is relative, and the caller's cgroup {} is outside {} (mounted from {})",
                    mine.path,
                    h.mountpoint.display(),
                    h.root
                ))
            })?;
            let mut parts = clean(below_mount).unwrap_or_default();
            parts.extend(inner.iter().copied());
            resolved.push((key, absolute(&parts)?));
        }
        // The common path: the cgroup2 tree's if there is one, else the first.
        let main_idx = self.hierarchies.iter().position(|h| h.version == super::Version::V2).unwrap_or(0);
        let Some((_, main)) = resolved.get(main_idx).cloned() else {
            return Err(Error::NoCgroupFs(Path::new(super::MOUNTINFO).to_owned()));
        };
        let per_hierarchy = resolved.into_iter().filter(|(_, p)| *p != main).collect();
        Ok(CgroupPath { path: main, per_hierarchy })
    }
}

fn invalid(reason: String) -> Error {
    Error::Invalid { field: FIELD, reason }
}

/// NUL, newlines and other control characters are refused: a newline would
/// forge lines in `/proc/<pid>/cgroup`, a NUL cannot reach the kernel.
fn check_chars(p: &str) -> Result<()> {
    if p.chars().any(char::is_control) {
        return Err(invalid(format!("{p:?} contains control characters")));
    }
    Ok(())
}

/// Lexical cleaning: drop empty and `.` components, let `..` remove the one
/// before it. `None` when `..` would climb above the start.
fn clean(p: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

fn absolute(parts: &[&str]) -> Result<String> {
    if parts.is_empty() {
        return Err(invalid("resolves to the root cgroup, which a container cannot own".into()));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// containerd and CRI-O pass `system.slice:cri-containerd:<id>` when told to
/// use the systemd driver; as a path it would make a strange directory.
fn looks_like_systemd(p: &str) -> bool {
    let parts: Vec<&str> = p.split(':').collect();
    parts.len() == 3 && !p.contains('/') && (parts[0].is_empty() || parts[0].ends_with(".slice") || parts[0] == "-")
}

fn same_controllers(a: &str, b: &str) -> bool {
    let mut a: Vec<&str> = a.split(',').filter(|s| !s.is_empty()).collect();
    let mut b: Vec<&str> = b.split(',').filter(|s| !s.is_empty()).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// The part of a cgroup path below a mount's root (`/docker/x/y` below
/// `/docker/x` is `/y`); `None` when it is not below.
fn strip_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::layout::tests::HYBRID;
    use super::super::{Mode, Version};
    use super::*;

    /// This host's shell: memory is the machine's own, the rest at the root.
    const OWN_HYBRID: &str = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n\
        4:memory:/process_api/842c\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    fn hybrid() -> Layout {
        Layout::from_mountinfo(HYBRID, Path::new("mountinfo")).unwrap()
    }

    fn unified() -> Layout {
        Layout {
            mode: Mode::Unified,
            hierarchies: vec![Hierarchy {
                mountpoint: PathBuf::from("/sys/fs/cgroup"),
                root: "/".into(),
                controllers: vec![],
                version: Version::V2,
            }],
        }
    }

    fn field_of(e: Error) -> &'static str {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absolute_paths_are_cleaned_not_resolved() {
        let l = hybrid();
        // No /proc/self/cgroup needed (an empty text would fail a relative path).
        let p = l.resolve_path(Some("/roci-test//a/./b/../c/"), "id", "").unwrap();
        assert_eq!(p.path(), "/roci-test/a/c");
        assert!(p.per_hierarchy().is_empty());
        assert_eq!(p.to_string(), "/roci-test/a/c");
        for h in &l.hierarchies {
            assert_eq!(p.in_hierarchy(h), "/roci-test/a/c");
        }
        assert!(!needs_own_cgroup(Some("/x")));
        assert!(needs_own_cgroup(Some("x")) && needs_own_cgroup(Some("")) && needs_own_cgroup(None));
    }

    #[test]
    fn escapes_and_garbage_are_refused_naming_the_field() {
        let l = hybrid();
        for bad in ["/../etc", "/a/../../b", "/", "/./", "/a/..", "/a\nb", "/a\0b", "a/../../x", ".", "a/..", "\t"] {
            let e = l.resolve_path(Some(bad), "id", OWN_HYBRID).unwrap_err();
            assert!(e.to_string().starts_with("invalid linux.cgroupsPath: "), "{bad:?}: {e}");
            assert_eq!(field_of(e), FIELD);
        }
        // An empty path falls back to the id, which is checked the same way.
        assert!(l.resolve_path(Some(""), "..", OWN_HYBRID).is_err());
        assert!(l.resolve_path(None, "a\nb", OWN_HYBRID).is_err());
    }

    #[test]
    fn systemd_style_paths_get_a_clear_error() {
        let e = unified().resolve_path(Some("system.slice:cri-containerd:abc"), "abc", "0::/\n").unwrap_err();
        assert!(e.to_string().contains("systemd-style"), "{e}");
        assert!(unified().resolve_path(Some(":runc:abc"), "abc", "0::/\n").is_err());
        // Colons are otherwise fine in cgroup names.
        assert_eq!(unified().resolve_path(Some("a:b"), "x", "0::/u\n").unwrap().path(), "/u/a:b");
        assert_eq!(unified().resolve_path(Some("/a:b:c"), "x", "").unwrap().path(), "/a:b:c");
    }

    #[test]
    fn relative_paths_go_under_the_callers_cgroup_in_each_hierarchy() {
        let l = hybrid();
        let p = l.resolve_path(Some("ctr/a"), "id", OWN_HYBRID).unwrap();
        assert_eq!(p.path(), "/ctr/a");
        let exceptions: Vec<_> = p.per_hierarchy().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(exceptions, [("memory", "/process_api/842c/ctr/a")]);
        let mem = l.hierarchies.iter().find(|h| h.has("memory")).unwrap();
        let pids = l.hierarchies.iter().find(|h| h.has("pids")).unwrap();
        assert_eq!(p.in_hierarchy(mem), "/process_api/842c/ctr/a");
        assert_eq!(p.in_hierarchy(pids), "/ctr/a");
        assert_eq!(p.to_string(), "/ctr/a (memory:/process_api/842c/ctr/a)");
        // Empty and absent paths become the container id.
        assert_eq!(l.resolve_path(Some(""), "c1", OWN_HYBRID).unwrap().path(), "/c1");
        assert_eq!(unified().resolve_path(None, "c1", "0::/user.slice/s.scope\n").unwrap().path(), "/user.slice/s.scope/c1");
        // `..` may move within the relative part, not above the caller.
        assert_eq!(unified().resolve_path(Some("a/../b"), "x", "0::/u\n").unwrap().path(), "/u/b");
    }

    #[test]
    fn relative_paths_respect_the_mount_root() {
        // Inside a container without a cgroup namespace: its cgroup is mounted.
        let mut l = unified();
        l.hierarchies[0].root = "/docker/abc".into();
        assert_eq!(l.resolve_path(Some("sub"), "x", "0::/docker/abc\n").unwrap().path(), "/sub");
        assert_eq!(l.resolve_path(Some("sub"), "x", "0::/docker/abc/init\n").unwrap().path(), "/init/sub");
        assert!(l.resolve_path(Some("sub"), "x", "0::/docker/abcd\n").is_err());
        assert!(l.resolve_path(Some("sub"), "x", "1:cpu:/\n").is_err(), "no cgroup2 line");
    }

    #[test]
    fn serialised_as_a_string_unless_hierarchies_differ() {
        let p = CgroupPath::new("/roci-test/c1").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""/roci-test/c1""#);
        assert_eq!(serde_json::from_str::<CgroupPath>(r#""/roci-test/c1""#).unwrap(), p);
        let q = hybrid().resolve_path(Some("c1"), "c1", OWN_HYBRID).unwrap();
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(json, r#"{"path":"/c1","per_hierarchy":{"memory":"/process_api/842c/c1"}}"#);
        assert_eq!(serde_json::from_str::<CgroupPath>(&json).unwrap(), q);
        // State files are checked like config.
        assert!(serde_json::from_str::<CgroupPath>(r#""/../x""#).is_err());
        assert!(serde_json::from_str::<CgroupPath>(r#"{"path":"/a","per_hierarchy":{"memory":"rel"}}"#).is_err());
    }

    #[test]
    fn strip_root_is_component_wise() {
        assert_eq!(strip_root("/a/b", "/"), Some("/a/b"));
        assert_eq!(strip_root("/a/b", "/a"), Some("/b"));
        assert_eq!(strip_root("/a", "/a/"), Some(""));
        assert_eq!(strip_root("/ab", "/a"), None);
        assert!(same_controllers("cpuacct,cpu", "cpu,cpuacct"));
        assert!(!same_controllers("cpu", "cpu,cpuacct"));
        assert!(same_controllers("", ""));
    }
}
