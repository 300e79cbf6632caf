//! `exec --cgroup`: run an exec'd process in an existing sub-cgroup of the
//! container's cgroup, as runc does.
//!
//! The arguments, each given as one `--cgroup`:
//! - `PATH`: the same sub-cgroup in every hierarchy; the only form a
//!   cgroup2-only host takes. `/` (or an empty path) is the container's own
//!   cgroup.
//! - `CONTROLLER[,CONTROLLER...]:PATH` (v1 and hybrid hosts): that
//!   controller's hierarchy only; the others stay in the container's
//!   cgroup, or go to `PATH` if one is given too (runc ignores the
//!   controller forms when a plain `PATH` is also given; here the
//!   controller's own path wins).
//!
//! `PATH` is taken relative to the container's cgroup (a leading `/` too)
//! and may not climb out of it: `..` is resolved lexically and refused past
//! the container's cgroup, so `../sibling` cannot reach a neighbour with a
//! common name prefix (the hole a string-prefix check leaves). The
//! sub-cgroups must exist: like runc, roci does not create them, and writes
//! nothing but the process's pid (a v1 cpuset sub-cgroup with no CPUs is an
//! error, not filled in).

use std::collections::BTreeMap;
use std::path::PathBuf;

use nix::unistd::Pid;

use super::layout::Version;
use super::{files, Error, Result};

/// The `--cgroup` option, for errors.
pub(crate) const OPTION: &str = "--cgroup";

/// Parsed `exec --cgroup` arguments ([`SubCgroup::parse`]); resolve them
/// against a container with [`Manager::sub_cgroup`](super::Manager::sub_cgroup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubCgroup {
    /// `PATH`: components below the container's cgroup, for every hierarchy.
    pub(crate) all: Option<Vec<String>>,
    /// `CONTROLLER:PATH`, by controller (`memory`, `name=systemd`).
    pub(crate) by_controller: BTreeMap<String, Vec<String>>,
}

impl SubCgroup {
    /// Parse the `--cgroup` arguments, as runc does: at most one plain
    /// `PATH`, each controller at most once.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<SubCgroup> {
        let mut sub = SubCgroup::default();
        for arg in args {
            let arg = arg.as_ref();
            let bad = |why: String| Error::Invalid { field: OPTION, reason: format!("{arg:?}: {why}") };
            if arg.chars().any(char::is_control) {
                return Err(bad("contains control characters".into()));
            }
            match arg.split_once(':') {
                Some((controllers, path)) => {
                    let parts = components(path).map_err(bad)?;
                    for c in controllers.split(',') {
                        if c.is_empty() {
                            return Err(bad("empty controller name before ':'".into()));
                        }
                        if sub.by_controller.insert(c.to_owned(), parts.clone()).is_some() {
                            return Err(bad(format!("controller {c} given more than once")));
                        }
                    }
                }
                None => {
                    if sub.all.is_some() {
                        return Err(bad("more than one PATH without a controller".into()));
                    }
                    sub.all = Some(components(arg).map_err(bad)?);
                }
            }
        }
        Ok(sub)
    }

    /// No argument given: the container's own cgroup.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.by_controller.is_empty()
    }

    /// The components below the container's cgroup for a hierarchy with
    /// these controllers (v1), or for the cgroup2 tree (`controllers`
    /// empty). Two controllers of one hierarchy with different paths are an
    /// error.
    pub(crate) fn for_hierarchy(&self, controllers: &[String]) -> Result<Option<&[String]>> {
        let mut found: Option<(&str, &Vec<String>)> = None;
        for c in controllers {
            if let Some(p) = self.by_controller.get(c) {
                match found {
                    Some((other, q)) if q != p => {
                        return Err(Error::Invalid {
                            field: OPTION,
                            reason: format!("{other} and {c} share a hierarchy but were given different paths"),
                        })
                    }
                    _ => found = Some((c, p)),
                }
            }
        }
        Ok(found.map(|(_, p)| p.as_slice()).or(self.all.as_deref()))
    }
}

/// Lexically cleaned components of a path below the container's cgroup.
fn components(path: &str) -> std::result::Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err("climbs out of the container's cgroup".into());
                }
            }
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

/// The container's sub-cgroup in every hierarchy, checked to exist, from
/// [`Manager::sub_cgroup`](super::Manager::sub_cgroup): put an exec'd
/// process there with [`SubCgroupDirs::add_process`], or let a new one enter
/// it itself through [`SubCgroupDirs::entry`].
#[derive(Debug)]
pub struct SubCgroupDirs {
    /// (version, directory, whether it is a v1 cpuset).
    pub(crate) dirs: Vec<(Version, PathBuf, bool)>,
}

impl SubCgroupDirs {
    /// Every directory the process joins, one per hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = &std::path::Path> {
        self.dirs.iter().map(|(_, d, _)| d.as_path())
    }

    /// Move a process into the sub-cgroup in every hierarchy.
    pub fn add_process(&self, pid: Pid) -> Result<()> {
        self.check_cpusets()?;
        for (_, dir, _) in &self.dirs {
            files::write(dir, "cgroup.procs", &pid.as_raw().to_string())?;
        }
        Ok(())
    }

    /// What a new process enters the sub-cgroup through (see
    /// [`Entry`](super::Entry)).
    pub fn entry(&self) -> Result<super::Entry> {
        self.check_cpusets()?;
        super::Entry::open(self.dirs.iter().map(|(v, d, _)| (*v, d.as_path())))
    }

    /// A v1 cpuset without CPUs or memory nodes takes no process.
    fn check_cpusets(&self) -> Result<()> {
        for (_, dir, _) in self.dirs.iter().filter(|(_, _, cpuset)| *cpuset) {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if files::read(dir, f)?.trim().is_empty() {
                    return Err(Error::Invalid {
                        field: OPTION,
                        reason: format!("{} is empty, so no process can join; set it first", dir.join(f).display()),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_and_per_controller_paths() {
        let s = SubCgroup::parse(&["a/./b/../c"]).unwrap();
        assert_eq!(s.all, Some(v(&["a", "c"])));
        assert!(s.by_controller.is_empty());
        assert!(SubCgroup::parse::<&str>(&[]).unwrap().is_empty());
        assert_eq!(SubCgroup::parse(&["/"]).unwrap().all, Some(vec![]));
        let s = SubCgroup::parse(&["cpu,cpuacct:/x", "memory:y/z", "w"]).unwrap();
        assert_eq!(s.by_controller["cpu"], v(&["x"]));
        assert_eq!(s.by_controller["cpuacct"], v(&["x"]));
        assert_eq!(s.by_controller["memory"], v(&["y", "z"]));
        assert_eq!(s.for_hierarchy(&v(&["memory"])).unwrap(), Some(&v(&["y", "z"])[..]));
        assert_eq!(s.for_hierarchy(&v(&["pids"])).unwrap(), Some(&v(&["w"])[..]), "the plain PATH elsewhere");
        assert_eq!(s.for_hierarchy(&[]).unwrap(), Some(&v(&["w"])[..]), "and in the cgroup2 tree");
        let s = SubCgroup::parse(&["memory:y"]).unwrap();
        assert_eq!(s.for_hierarchy(&v(&["pids"])).unwrap(), None);
        let s = SubCgroup::parse(&["cpu:a", "cpuacct:b"]).unwrap();
        assert!(s.for_hierarchy(&v(&["cpu", "cpuacct"])).unwrap_err().to_string().contains("share a hierarchy"));
    }

    #[test]
    fn bad_arguments() {
        for (args, says) in [
            (&["../sibling"][..], "climbs out"),
            (&["a/../../x"][..], "climbs out"),
            (&["memory:.."][..], "climbs out"),
            (&["a", "b"][..], "more than one PATH"),
            (&["memory:a", "memory,pids:b"][..], "controller memory given more than once"),
            (&[":a"][..], "empty controller"),
            (&["cpu,:a"][..], "empty controller"),
            (&["a\nb"][..], "control characters"),
        ] {
            let e = SubCgroup::parse(args).unwrap_err().to_string();
            assert!(e.starts_with("invalid --cgroup: "), "{args:?}: {e}");
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
