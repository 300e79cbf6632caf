//! The OCI runtime suite: real containers through the runtime's runc-compatible CLI, as root, against the
//! real kernel. Runtime under test: `ROCI_TEST_RUNTIME` (default: the workspace's roci); run the same
//! suite against runc with `ROCI_TEST_RUNTIME=$(which runc)`.
//!
//! Each test asserts what the container sees (busybox commands inside, output captured) and what the host
//! sees after (`Container::assert_no_leaks`). Where roci differs from runc on purpose, the test branches on
//! `rt.is_runc()` and the comment there states the documented difference.
//!
//! Cgroup tests are named `cgroup_*` so `cargo test --test oci cgroup_` runs them alone (the v2 guest does).

mod bad_input;
mod cgroup;
mod checkpoint;
mod cli;
mod cri_spec;
mod devices;
mod events;
mod exe_overwrite;
mod exec;
mod exec_tty;
mod fds;
mod features;
mod hooks;
mod killed;
mod lifecycle;
mod namespaces;
mod netdev;
mod paths;
mod process;
mod process_attrs;
mod rootfs;
mod rootless;
mod seccomp;
mod security;
mod terminal;
mod userns;

use roci_integration::{Container, Output};

/// A container running `sh -c SCRIPT` in the foreground with the default spec tweaked by `tweak`;
/// asserts it exited 0 and checks for leaks.
pub fn run_sh(name: &str, script: &str, tweak: impl FnOnce(&mut Container)) -> Output {
    let mut c = Container::new(name);
    c.spec.sh(script);
    tweak(&mut c);
    let out = c.run();
    out.ok();
    c.assert_no_leaks();
    out
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(MountEntry {
                root: roci_integration::unescape_mountinfo(l[3]),
                mount_point: roci_integration::unescape_mountinfo(l[4]),
                options: l[5].split(',').map(String::from).collect(),
                optional: l[6..].iter().map(|s| s.to_string()).collect(),
                fstype: r[0].to_string(),
                source: r[1].to_string(),
                super_options: r[2].split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// The last (topmost) mount at `mount_point`.
#[track_caller]
pub fn mount_at<'a>(entries: &'a [MountEntry], mount_point: &str) -> &'a MountEntry {
    entries
        .iter()
        .rev()
        .find(|e| e.mount_point == mount_point)
        .unwrap_or_else(|| panic!("no mount at {mount_point} in {entries:#?}"))
}

/// The text of a section `== NAME ==` ... up to the next section marker, in output produced by scripts
/// that print `echo "== NAME =="` before each part.
#[track_caller]
pub fn section(out: &str, name: &str) -> String {
    let marker = format!("== {name} ==");
    let start = out.find(&marker).unwrap_or_else(|| panic!("no section {name} in output:\n{out}")) + marker.len();
    let rest = &out[start..];
    let end = rest.find("\n== ").unwrap_or(rest.len());
    rest[..end].trim().to_string()
}
