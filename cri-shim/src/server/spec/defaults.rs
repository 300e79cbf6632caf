//! The base of every spec: containerd's default Unix spec (`oci.populateDefaultUnixSpec`) as its
//! CRI plugin uses it, i.e. without the `/run` tmpfs (`WithoutRunMount`) and without rlimits,
//! seccomp or AppArmor (`WithoutDefaultSecuritySettings`), and the cgroup path rule.

use std::path::Path;

use serde_json::{json, Value};

use super::SpecError;

/// The PATH of a container whose image sets none (containerd's `WithDefaultPathEnv`), and
/// containerd's (and Docker's) default capabilities: the same as `roci image`'s.
pub use libimage::convert::{DEFAULT_CAPS, DEFAULT_PATH as DEFAULT_PATH_ENV};

/// The default masked paths: the pause container keeps them; a container gets the list kubelet
/// sends instead (see `container.rs`).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The top cgroup of pods and containers whose pod gives no cgroup parent: containerd's
/// `/<namespace>/<id>` with its CRI namespace.
pub const DEFAULT_CGROUP_PARENT: &str = "/k8s.io";

/// The pause container's oom_score_adj (kubernetes#47938).
pub const SANDBOX_OOM_SCORE_ADJ: i32 = -998;

/// The pause container's CPU shares.
pub const SANDBOX_CPU_SHARES: u64 = 2;

pub const DEV_SHM: &str = "/dev/shm";
pub const ETC_HOSTS: &str = "/etc/hosts";
pub const ETC_HOSTNAME: &str = "/etc/hostname";
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The names of the capabilities in a `/proc/<pid>/status` mask (those roci knows), in the
/// kernel's order.
pub fn caps_from_mask(mask: u64) -> Vec<String> {
    let mut caps: Vec<caps::Capability> = caps::all().into_iter().filter(|c| mask & c.bitmask() != 0).collect();
    caps.sort_by_key(|c| c.index());
    caps.iter().map(|c| c.to_string()).collect()
}

/// Whether `name` (`CAP_...`) is a capability roci knows.
pub fn known_cap(name: &str) -> bool {
    name.parse::<caps::Capability>().is_ok()
}

/// The base spec for a container whose root filesystem is `rootfs`.
pub fn base(rootfs: &Path) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "root": { "path": rootfs },
        "process": {
            "cwd": "/",
            "noNewPrivileges": true,
            "user": { "uid": 0, "gid": 0 },
            "capabilities": { "bounding": DEFAULT_CAPS, "permitted": DEFAULT_CAPS, "effective": DEFAULT_CAPS },
            "env": []
        },
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "network" }
            ]
        }
    })
}

/// containerd's `getCgroupsPath` for the cgroupfs driver: `<parent>/<id>`, or
/// [`DEFAULT_CGROUP_PARENT`]`/<id>` without a parent. A systemd slice (`*.slice`) means kubelet
/// runs the systemd driver, which roci-cri does not (RuntimeConfig reports cgroupfs): refused.
pub fn cgroups_path(parent: &str, id: &str, field: &str) -> Result<String, SpecError> {
    if parent.is_empty() {
        return Ok(format!("{DEFAULT_CGROUP_PARENT}/{id}"));
    }
    let base = parent.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if base.ends_with(".slice") {
        return Err(SpecError::unsupported(
            field,
            format!("{parent:?} is a systemd slice; roci-cri's cgroup driver is cgroupfs (configure kubelet's cgroupDriver: cgroupfs)"),
        ));
    }
    if !parent.starts_with('/') || parent.split('/').any(|c| c == "..") {
        return Err(SpecError::invalid(field, format!("{parent:?} is not an absolute cgroup path without ..")));
    }
    Ok(format!("{}/{id}", parent.trim_end_matches('/')))
}

/// containerd's `replaceOrAppendEnvValues`: each of `overrides` replaces the entry of the same
/// name or is appended; a name without `=` removes that variable.
pub fn merge_env(env: &mut Vec<String>, overrides: &[String]) {
    let name = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    for o in overrides {
        let key = name(o);
        let pos = env.iter().position(|e| name(e) == key);
        match (o.contains('='), pos) {
            (true, Some(i)) => env[i] = o.clone(),
            (true, None) => env.push(o.clone()),
            (false, Some(i)) => {
                env.remove(i);
            }
            (false, None) => {}
        }
    }
}

/// Replace the namespace of `typ` (or add it) in `spec.linux.namespaces`.
pub fn set_namespace(spec: &mut Value, typ: &str, path: Option<&Path>) {
    let ns = match path {
        Some(p) => json!({ "type": typ, "path": p }),
        None => json!({ "type": typ }),
    };
    let list = spec["linux"]["namespaces"].as_array_mut();
    if let Some(list) = list {
        match list.iter_mut().find(|n| n["type"] == typ) {
            Some(n) => *n = ns,
            None => list.push(ns),
        }
    }
}

/// Remove the namespace of `typ` (the container shares the host's).
pub fn remove_namespace(spec: &mut Value, typ: &str) {
    if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
        list.retain(|n| n["type"] != typ);
    }
}

/// Check the SELinux level format containerd checks (`checkSelinuxLevel`), whatever the host.
pub fn check_selinux_level(level: &str, field: &str) -> Result<(), SpecError> {
    if level.is_empty() {
        return Ok(());
    }
    // ^s\d(-s\d)?(:c\d{1,4}(\.c\d{1,4})?(,c\d{1,4}(\.c\d{1,4})?)*)?$
    let bad = || SpecError::invalid(field, format!("the format of level {level:?} is not correct"));
    let (sens, cats) = match level.split_once(':') {
        Some((s, c)) => (s, Some(c)),
        None => (level, None),
    };
    let sensitivity = |s: &str| s.len() == 2 && s.starts_with('s') && s.as_bytes()[1].is_ascii_digit();
    match sens.split_once('-') {
        Some((a, b)) if sensitivity(a) && sensitivity(b) => {}
        None if sensitivity(sens) => {}
        _ => return Err(bad()),
    }
    if let Some(cats) = cats {
        let category =
            |c: &str| c.strip_prefix('c').is_some_and(|n| (1..=4).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
        for item in cats.split(',') {
            let ok = match item.split_once('.') {
                Some((a, b)) => category(a) && category(b),
                None => category(item),
            };
            if !ok {
                return Err(bad());
            }
        }
    }
    Ok(())
}

/// Push `item` onto the array at `slot`, making it an array first if it is not one.
pub fn append(slot: &mut Value, item: Value) {
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    if let Value::Array(list) = slot {
        list.push(item);
    }
}

/// An annotations object from key/value pairs.
pub fn annotations(pairs: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect()
}
