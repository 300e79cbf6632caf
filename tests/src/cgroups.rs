//! The host's cgroup hierarchies and the suite's own parent cgroup.
//!
//! Works on a hybrid host (v1 controllers at /sys/fs/cgroup/<controller>, a cgroup2 tree beside them) and
//! on a pure v2 host. Every test container's `cgroupsPath` is `/roci-it-<pid>/<container-id>`: absolute,
//! under a parent this test process owns. The harness only ever removes directories under that parent (and
//! stale `/roci-it-<pid>` parents of dead test processes); it never writes to or unmounts anything else.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// v1: the controllers of this mount (`cpu`, `memory`, `name=systemd`...); v2: `cgroup.controllers`.
    pub controllers: Vec<String>,
    pub v2: bool,
}

static HIERARCHIES: OnceLock<Vec<Hierarchy>> = OnceLock::new();

/// Every cgroup mount of the host (first mount of each hierarchy).
pub fn hierarchies() -> &'static [Hierarchy] {
    HIERARCHIES.get_or_init(|| {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        let mut out: Vec<Hierarchy> = Vec::new();
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let _source = r.next();
            let superopts = r.next().unwrap_or("");
            let mount = PathBuf::from(crate::unescape_mountinfo(left.split(' ').nth(4).unwrap_or("")));
            let h = match fstype {
                "cgroup" => Hierarchy {
                    controllers: superopts
                        .split(',')
                        .filter(|o| {
                            !matches!(
                                *o,
                                "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec" | "clone_children" | "xattr"
                            ) && !o.starts_with("release_agent")
                        })
                        .map(String::from)
                        .collect(),
                    mount,
                    v2: false,
                },
                "cgroup2" => Hierarchy {
                    controllers: fs::read_to_string(mount.join("cgroup.controllers"))
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                    mount,
                    v2: true,
                },
                _ => continue,
            };
            // The same hierarchy may be mounted twice; keep the first mount of each controller set.
            if !out.iter().any(|o| o.v2 == h.v2 && o.controllers == h.controllers) {
                out.push(h);
            }
        }
        out
    })
}

/// True on a pure cgroup v2 host (no v1 controller hierarchy mounted).
pub fn is_v2() -> bool {
    !hierarchies().iter().any(|h| !h.v2)
}

/// The hierarchy that holds `controller` (v1: its own mount; v2: the unified mount).
pub fn hierarchy_of(controller: &str) -> Option<&'static Hierarchy> {
    if is_v2() {
        hierarchies().iter().find(|h| h.v2)
    } else {
        hierarchies().iter().find(|h| !h.v2 && h.controllers.iter().any(|c| c == controller))
    }
}

/// Host directory of cgroup `rel` (e.g. `/roci-it-1/x`) in the hierarchy of `controller`.
pub fn dir(controller: &str, rel: &str) -> PathBuf {
    let h = hierarchy_of(controller).unwrap_or_else(|| panic!("no cgroup hierarchy with controller {controller}"));
    h.mount.join(rel.trim_start_matches('/'))
}

/// Contents (trimmed) of `file` in cgroup `rel` of `controller`'s hierarchy.
pub fn read(controller: &str, rel: &str, file: &str) -> Option<String> {
    fs::read_to_string(dir(controller, rel).join(file)).ok().map(|s| s.trim().to_string())
}

/// The directories of cgroup `rel` in every hierarchy.
pub fn dirs(rel: &str) -> Vec<PathBuf> {
    hierarchies().iter().map(|h| h.mount.join(rel.trim_start_matches('/'))).collect()
}

/// Those of [`dirs`] that exist.
pub fn existing_dirs(rel: &str) -> Vec<PathBuf> {
    dirs(rel).into_iter().filter(|d| d.is_dir()).collect()
}

/// The pids in `cgroup.procs` of `rel` in `controller`'s hierarchy.
pub fn procs(controller: &str, rel: &str) -> Vec<i32> {
    read(controller, rel, "cgroup.procs").unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// This test process's parent cgroup: `/roci-it-<pid>`.
pub fn suite_parent() -> String {
    format!("/roci-it-{}", std::process::id())
}

/// Remove cgroup `rel` and everything below it in every hierarchy: children first, retrying for a moment
/// (a cgroup whose last process is a zombie not yet reaped is still busy). Returns what could not be removed.
pub fn remove_tree(rel: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for d in dirs(rel) {
        if !remove_dir_tree(&d) {
            left.push(d);
        }
    }
    left
}

fn remove_dir_tree(d: &Path) -> bool {
    let Ok(entries) = fs::read_dir(d) else { return !d.exists() };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dir_tree(&e.path());
        }
    }
    crate::wait_for(Duration::from_secs(2), || match fs::remove_dir(d) {
        Ok(()) => true,
        Err(e) => e.kind() == ErrorKind::NotFound,
    })
}

/// Kill (SIGKILL) every process in cgroup `rel` (and below) of every hierarchy. Only used by the guards on
/// the cgroups they created for their own container.
pub fn kill_all(rel: &str) {
    for d in dirs(rel) {
        kill_in(&d);
    }
}

fn kill_in(d: &Path) {
    let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) else { return };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    if let Ok(entries) = fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                kill_in(&e.path());
            }
        }
    }
}

/// Users of the suite parent; when the count drops to zero the parent is removed from every hierarchy.
/// Taking a use and creating a leaf happen while the count is above zero, so the parent is never removed
/// under a runtime that is about to create a leaf in it.
static PARENT_USERS: Mutex<usize> = Mutex::new(0);

pub struct ParentUse(());

impl ParentUse {
    pub fn take() -> ParentUse {
        let mut n = PARENT_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *n == 0 {
            sweep_stale();
        }
        *n += 1;
        ParentUse(())
    }
}

impl Drop for ParentUse {
    fn drop(&mut self) {
        let mut n = PARENT_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 {
            for d in dirs(&suite_parent()) {
                // Only the empty parent goes: a leaf a guard failed to remove stays visible as a leak.
                let _ = fs::remove_dir(&d);
            }
        }
    }
}

/// Remove the empty cgroups under `/roci-it-<pid>` parents left by test processes that no longer exist.
pub fn sweep_stale() {
    for h in hierarchies() {
        let Ok(entries) = fs::read_dir(&h.mount) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("roci-it-").and_then(|p| p.parse::<i32>().ok()) else { continue };
            if pid as u32 != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                // rmdir of a cgroup with processes fails: only the empty leftovers go.
                remove_dir_tree(&e.path());
            }
        }
    }
}
