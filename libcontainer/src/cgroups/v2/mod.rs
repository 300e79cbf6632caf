//! cgroup v2: one file per controller, each writing that controller's files
//! in the container's directory (`devices.rs`: the BPF device filter;
//! `freezer.rs`: `cgroup.freeze`); plus enabling controllers down the tree
//! and `cgroup.kill`.
//!
//! A controller's files exist in a cgroup only when the parent lists it in
//! `cgroup.subtree_control`, which it can only do for controllers in its own
//! `cgroup.controllers`. So controllers are enabled top-down, from the mount
//! root to the container's parent, and only where missing: on a usual
//! cgroup2 host the root already delegates everything and is not written.

pub mod cpu;
pub mod cpuset;
pub mod devices;
pub mod freezer;
pub mod hugetlb;
pub mod io;
pub mod memory;
pub mod pids;
pub mod rdma;
pub mod unified;

use std::path::{Path, PathBuf};

use crate::cgroups::{files, Error, Result};

const CONTROLLERS: &str = "cgroup.controllers";
const SUBTREE_CONTROL: &str = "cgroup.subtree_control";

/// The controllers a cgroup can use (`cgroup.controllers`).
pub fn controllers(dir: &Path) -> Result<Vec<String>> {
    Ok(files::read(dir, CONTROLLERS)?.split_whitespace().map(str::to_owned).collect())
}

/// `leaf`'s ancestors from `mount` down to its parent.
fn ancestors(mount: &Path, leaf: &Path) -> Vec<PathBuf> {
    let Ok(rel) = leaf.strip_prefix(mount) else {
        return Vec::new();
    };
    let mut out = vec![mount.to_owned()];
    let mut cur = mount.to_owned();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        out.push(cur.clone());
    }
    out
}

/// Enable controllers for `leaf` in each ancestor's `cgroup.subtree_control`,
/// top-down, writing only those missing and available there.
///
/// `wanted: None` means every available controller, best effort, as runc
/// does when it creates a cgroup: a failure (say, an ancestor with processes
/// of its own) is logged, and a resource needing the controller later fails
/// naming its field. `Some(list)` (a resource needs these) returns the
/// failed write.
pub fn enable(mount: &Path, leaf: &Path, wanted: Option<&[&str]>) -> Result<()> {
    for dir in ancestors(mount, leaf) {
        let available = controllers(&dir)?;
        let enabled = files::read(&dir, SUBTREE_CONTROL)?;
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        let missing: Vec<&str> = available
            .iter()
            .map(String::as_str)
            .filter(|c| wanted.is_none_or(|w| w.contains(c)) && !enabled.contains(c))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let all = missing.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
        match files::write(&dir, SUBTREE_CONTROL, &all) {
            Ok(()) => {}
            Err(e) if wanted.is_some() => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "enabling controllers together failed; trying one by one");
                for c in &missing {
                    if let Err(e) = files::write(&dir, SUBTREE_CONTROL, &format!("+{c}")) {
                        tracing::warn!(error = %e, controller = c, "controller not enabled");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Kill every process in the cgroup and below with `cgroup.kill` (5.14+).
/// `false` when the kernel has no `cgroup.kill`.
pub fn kill(dir: &Path) -> Result<bool> {
    if !files::exists(dir, "cgroup.kill") {
        return Ok(false);
    }
    files::write(dir, "cgroup.kill", "1")?;
    Ok(true)
}

/// Turn a failed enable into the error a resource reports.
pub(crate) fn enable_failed(field: &str, controller: &str, leaf: &Path, e: Error) -> Error {
    Error::ControllerUnavailable {
        field: field.to_owned(),
        controller: controller.to_owned(),
        place: format!("in {} ({e})", leaf.display()),
    }
}

/// `0` (unset) writes nothing, `-1` is `max`, the rest as they are: the
/// values of v2's `.max`, `.low`, `.high` files.
pub(crate) fn num_to_str(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".to_owned()),
        v => Some(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn cg(dir: &Path, controllers: &str, subtree: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(CONTROLLERS), controllers).unwrap();
        fs::write(dir.join(SUBTREE_CONTROL), subtree).unwrap();
    }

    #[test]
    fn ancestors_stop_above_the_leaf() {
        let a = ancestors(Path::new("/sys/fs/cgroup"), Path::new("/sys/fs/cgroup/a/b/c"));
        assert_eq!(a, [Path::new("/sys/fs/cgroup"), Path::new("/sys/fs/cgroup/a"), Path::new("/sys/fs/cgroup/a/b")]);
        assert_eq!(ancestors(Path::new("/m"), Path::new("/m/c")), [Path::new("/m")]);
        assert!(ancestors(Path::new("/m"), Path::new("/elsewhere/c")).is_empty());
    }

    #[test]
    fn only_missing_available_controllers_are_written() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        cg(root, "cpuset cpu io memory hugetlb pids\n", "cpu io memory pids\n");
        cg(&root.join("a"), "cpu memory pids\n", "\n");
        cg(&root.join("a/c"), "", "");
        enable(root, &root.join("a/c"), None).unwrap();
        // The root lacked cpuset and hugetlb; `a` lacked all it has.
        assert_eq!(files::read(root, SUBTREE_CONTROL).unwrap(), "+cpuset +hugetlb");
        assert_eq!(files::read(&root.join("a"), SUBTREE_CONTROL).unwrap(), "+cpu +memory +pids");
        // Asking for one: only that, and nothing where it is already on.
        cg(root, "cpu memory hugetlb\n", "cpu memory\n");
        cg(&root.join("a"), "cpu memory\n", "memory\n");
        enable(root, &root.join("a/c"), Some(&["hugetlb"])).unwrap();
        assert_eq!(files::read(root, SUBTREE_CONTROL).unwrap(), "+hugetlb");
        assert_eq!(files::read(&root.join("a"), SUBTREE_CONTROL).unwrap(), "memory", "hugetlb not available in a");
    }

    #[test]
    fn a_failed_wanted_enable_is_returned() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::write(root.join(CONTROLLERS), "memory").unwrap();
        // No subtree_control file: its read fails, naming it.
        let e = enable(root, &root.join("c"), Some(&["memory"])).unwrap_err();
        assert!(e.to_string().contains(SUBTREE_CONTROL), "{e}");
    }

    #[test]
    fn numbers() {
        assert_eq!(num_to_str(0), None);
        assert_eq!(num_to_str(-1).as_deref(), Some("max"));
        assert_eq!(num_to_str(4096).as_deref(), Some("4096"));
    }
}
