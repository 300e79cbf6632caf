//! The host's cgroup layout, from `/proc/self/mountinfo`, and the caller's
//! own cgroups, from `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

use super::{Error, Result};

/// Which cgroup versions the host has mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only cgroup2, mounted at `/sys/fs/cgroup`.
    Unified,
    /// v1 controllers under `/sys/fs/cgroup/<controller>` and a cgroup2 tree
    /// (usually `/sys/fs/cgroup/unified`) holding what v1 does not.
    Hybrid,
    /// Only v1 hierarchies.
    Legacy,
}

/// One mounted hierarchy, as found in `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted on the host, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    pub mountpoint: PathBuf,
    /// The cgroup path of the mount's root (4th field of mountinfo), usually `/`.
    pub root: String,
    /// v1 controllers (and `name=` hierarchies) on this mount; empty for cgroup2.
    pub controllers: Vec<String>,
    pub version: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Hierarchy {
    /// The hierarchy's name in `/proc/<pid>/cgroup`: its controllers joined by
    /// commas (`cpu,cpuacct`, `name=systemd`), empty for cgroup2.
    pub fn key(&self) -> String {
        self.controllers.join(",")
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The host's cgroup layout: the hierarchies a container gets a directory in.
/// On a cgroup2-only host that is the one cgroup2 mount (v1 mounts such a host
/// may still carry are ignored, as runc ignores them).
#[derive(Debug, Clone)]
pub struct Layout {
    pub mode: Mode,
    pub hierarchies: Vec<Hierarchy>,
}

/// v1 subsystems a `cgroup` mount's super options may name. Other options
/// (`rw`, `xattr`, `release_agent=...`) are not controllers.
const V1_SUBSYSTEMS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "io",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// The usual home of cgroup filesystems.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Layout {
    /// Parse `/proc/self/mountinfo` text (`origin` names it in errors).
    ///
    /// A mount hidden by a later mount on the same or a parent mountpoint
    /// (for example a tmpfs put over `/sys/fs/cgroup/unified` to make a host
    /// look v1-only) is ignored. When a hierarchy is mounted more than once,
    /// the mount under `/sys/fs/cgroup` wins, then the first one.
    pub fn from_mountinfo(text: &str, origin: &Path) -> Result<Layout> {
        let mut mounts = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let m = crate::mountinfo::parse_line(line).ok_or_else(|| Error::Parse {
                path: origin.to_owned(),
                line: i + 1,
                reason: format!("malformed mountinfo line {line:?}"),
            })?;
            mounts.push(m);
        }
        // Visible cgroup mounts, in mount order.
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut v2: Vec<Hierarchy> = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            let version = match m.fstype.as_str() {
                "cgroup" => Version::V1,
                "cgroup2" => Version::V2,
                _ => continue,
            };
            // Path::starts_with compares whole components and includes equality.
            let hidden = mounts[i + 1..].iter().any(|later| m.mount_point.starts_with(&later.mount_point));
            if hidden {
                continue;
            }
            let controllers = match version {
                Version::V2 => Vec::new(),
                Version::V1 => m
                    .super_options
                    .split(',')
                    .filter(|o| V1_SUBSYSTEMS.contains(o) || o.starts_with("name="))
                    .map(str::to_owned)
                    .collect(),
            };
            if version == Version::V1 && controllers.is_empty() {
                continue;
            }
            let h = Hierarchy {
                mountpoint: m.mount_point.clone(),
                root: m.root.to_string_lossy().into_owned(),
                controllers,
                version,
            };
            let list = if version == Version::V1 { &mut v1 } else { &mut v2 };
            match list.iter_mut().find(|o| o.controllers == h.controllers) {
                Some(old) if !old.mountpoint.starts_with(CGROUP_ROOT) && h.mountpoint.starts_with(CGROUP_ROOT) => *old = h,
                Some(_) => {}
                None => list.push(h),
            }
        }
        let v2 = v2.into_iter().next();
        let unified_at_root = v2.as_ref().is_some_and(|h| h.mountpoint == Path::new(CGROUP_ROOT));
        let (mode, hierarchies) = match v2 {
            Some(h) if unified_at_root || v1.is_empty() => (Mode::Unified, vec![h]),
            Some(h) => {
                v1.push(h);
                (Mode::Hybrid, v1)
            }
            None if v1.is_empty() => return Err(Error::NoCgroupFs(origin.to_owned())),
            None => (Mode::Legacy, v1),
        };
        Ok(Layout { mode, hierarchies })
    }

    /// The cgroup2 hierarchy, if there is one.
    pub fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V2)
    }
}

/// One line of `/proc/<pid>/cgroup`: `4:memory:/process_api/x` or `0::/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCgroup {
    /// Comma-joined controllers (`cpu,cpuacct`, `name=systemd`), empty for cgroup2.
    pub key: String,
    pub path: String,
}

/// Parse `/proc/self/cgroup` text.
pub fn parse_proc_cgroup(text: &str, origin: &Path) -> Result<Vec<OwnCgroup>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(key), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Parse { path: origin.to_owned(), line: i + 1, reason: format!("malformed line {line:?}") });
        };
        out.push(OwnCgroup { key: key.to_owned(), path: path.to_owned() });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// This project's test host, verbatim.
    pub(crate) const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn parse(text: &str) -> Result<Layout> {
        Layout::from_mountinfo(text, Path::new("mountinfo"))
    }

    #[test]
    fn hybrid_host() {
        let l = parse(HYBRID).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.hierarchies.len(), 10);
        let keys: Vec<_> = l.hierarchies.iter().map(Hierarchy::key).collect();
        assert_eq!(keys, ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd", ""]);
        let v2 = l.v2().unwrap();
        assert_eq!(v2.mountpoint, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v2.root, "/");
        assert!(v2.controllers.is_empty());
    }

    #[test]
    fn unified_host_ignores_stray_v1_mounts() {
        let text = "\
25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
90 25 0:40 / /sys/fs/cgroup/misc rw - cgroup cgroup rw,name=legacy
";
        let l = parse(text).unwrap();
        assert_eq!(l.mode, Mode::Unified);
        assert_eq!(l.hierarchies.len(), 1);
        assert_eq!(l.hierarchies[0].mountpoint, Path::new("/sys/fs/cgroup"));
        assert_eq!(l.hierarchies[0].version, Version::V2);
    }

    #[test]
    fn legacy_host_with_comounted_controllers_and_options() {
        let text = "\
24 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:22 / /sys/fs/cgroup/systemd rw shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
29 24 0:26 / /sys/fs/cgroup/net_cls,net_prio rw shared:15 - cgroup cgroup rw,net_cls,net_prio
30 24 0:27 / /sys/fs/cgroup/cpuset rw shared:16 - cgroup cgroup rw,cpuset,clone_children
";
        let l = parse(text).unwrap();
        assert_eq!(l.mode, Mode::Legacy);
        let keys: Vec<_> = l.hierarchies.iter().map(Hierarchy::key).collect();
        assert_eq!(keys, ["name=systemd", "cpu,cpuacct", "net_cls,net_prio", "cpuset"]);
        assert!(l.hierarchies[1].has("cpuacct"));
        assert!(l.v2().is_none());
    }

    #[test]
    fn a_mount_over_the_unified_tree_hides_it() {
        // crun's trick for hybrid hosts: a tmpfs over /sys/fs/cgroup/unified.
        let text = format!("{HYBRID}99 41 0:99 / /sys/fs/cgroup/unified rw - tmpfs tmpfs rw\n");
        let l = parse(&text).unwrap();
        assert_eq!(l.mode, Mode::Legacy);
        assert!(l.v2().is_none());
        // A tmpfs over all of /sys/fs/cgroup hides every hierarchy.
        let text = format!("{HYBRID}99 31 0:99 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
        assert!(matches!(parse(&text), Err(Error::NoCgroupFs(_))));
    }

    #[test]
    fn duplicate_mounts_prefer_sys_fs_cgroup_and_keep_root() {
        let text = "\
50 1 0:29 /docker/abc /mnt/cpu rw - cgroup cgroup rw,cpu
51 1 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
52 1 0:29 /x /sys/fs/cgroup/cpu2 rw - cgroup cgroup rw,cpu
";
        let l = parse(text).unwrap();
        assert_eq!(l.hierarchies.len(), 1);
        assert_eq!(l.hierarchies[0].mountpoint, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(l.hierarchies[0].root, "/");
    }

    #[test]
    fn v2_elsewhere_alone_is_unified_and_escapes_are_decoded() {
        let text = "60 1 0:40 /a\\040b /mnt/my\\040cgroup rw - cgroup2 none rw\n";
        let l = parse(text).unwrap();
        assert_eq!(l.mode, Mode::Unified);
        assert_eq!(l.hierarchies[0].mountpoint, Path::new("/mnt/my cgroup"));
        assert_eq!(l.hierarchies[0].root, "/a b");
    }

    #[test]
    fn no_cgroups_and_garbage() {
        assert!(matches!(parse("1 0 0:1 / / rw - ext4 /dev/sda rw\n"), Err(Error::NoCgroupFs(_))));
        match parse("1 0 0:1 / / rw - ext4 /dev/sda rw\nnonsense\n") {
            Err(Error::Parse { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn proc_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/process_api/842c\n2:cpu,cpuacct:/a:b\n0::/\n";
        let own = parse_proc_cgroup(text, Path::new("cgroup")).unwrap();
        assert_eq!(own[1], OwnCgroup { key: "memory".into(), path: "/process_api/842c".into() });
        assert_eq!(own[2], OwnCgroup { key: "cpu,cpuacct".into(), path: "/a:b".into() });
        assert_eq!(own[3], OwnCgroup { key: String::new(), path: "/".into() });
        assert!(parse_proc_cgroup("garbage\n", Path::new("cgroup")).is_err());
    }
}
