//! Harness for roci's integration suites.
//!
//! Every suite drives a runtime binary through its runc-compatible command line, as root, against the
//! real kernel. The binary is a parameter: `ROCI_TEST_RUNTIME=/path/to/runtime` (default: the workspace's
//! `roci`, release build first), so the same suite validates roci and its reference, runc.
//!
//! Pieces:
//! - [`runtime`]: which binary is under test and what it is (`is_runc()` marks documented differences).
//! - [`spec`]: a `config.json` builder over `serde_json::Value`, defaulting to `runc spec`'s output.
//! - [`rootfs`]: a busybox-static root filesystem per test, linked from one cached copy of the binary.
//! - [`cgroups`]: where the host keeps cgroups (hybrid v1 or pure v2) and the suite's own parent cgroup.
//! - [`container`]: the per-test guard: a bundle, a state dir, runtime invocations, cleanup and leak checks.
//! - [`console`]: receives a pty master over a `--console-socket`.
//! - [`wait`]: poll-with-deadline helpers instead of fixed sleeps.

pub mod cgroups;
pub mod console;
pub mod container;
pub mod exec;
pub mod image;
pub mod registry;
pub mod rootfs;
pub mod runtime;
pub mod spec;
pub mod wait;

pub use container::Container;
pub use exec::Output;
pub use runtime::{runtime, Runtime, RuntimeKind};
pub use spec::Spec;
pub use wait::{wait_for, wait_until};

/// Process state letter from `/proc/PID/stat` (`R`, `S`, `Z`, ...), `None` when the pid does not exist.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().next()?.chars().next()
}

/// Start time (field 22 of `/proc/PID/stat`, in clock ticks since boot): with the pid it identifies a
/// process without the risk of pid reuse.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after `comm` start at field 3 (state); starttime is field 22.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// True when the process is gone or a zombie (dead but not yet reaped: PID 1 on these hosts reaps late).
pub fn is_dead(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Inode of a namespace link (`/proc/PID/ns/net` and the like) as the kernel prints it: `net:[4026531840]`.
pub fn ns_id(path: &str) -> String {
    std::fs::read_link(path).unwrap_or_else(|e| panic!("readlink {path}: {e}")).to_string_lossy().into_owned()
}

/// Mount points in the caller's mount namespace (field 5 of `/proc/self/mountinfo`, octal escapes decoded).
pub fn host_mount_points() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mountinfo).collect()
}

/// Decode the `\040`-style octal escapes of /proc/self/mountinfo.
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_mountinfo_octal() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        assert!(!is_dead(me));
        assert!(proc_start_time(me).is_some());
        assert!(matches!(proc_state(me), Some('R') | Some('S')));
    }

    #[test]
    fn spec_set_and_remove_by_pointer() {
        let mut s = Spec::new();
        s.set("/linux/resources/pids/limit", serde_json::json!(10));
        assert_eq!(s.get("/linux/resources/pids/limit"), Some(&serde_json::json!(10)));
        s.set("/process/args/0", serde_json::json!("ls"));
        assert_eq!(s.get("/process/args"), Some(&serde_json::json!(["ls"])));
        s.remove("/ociVersion").remove_namespace("network").namespace("cgroup", None);
        assert!(s.get("/ociVersion").is_none());
        assert_eq!(s.namespaces(), ["pid", "ipc", "uts", "mount", "cgroup"]);
        s.device("/dev/x", "c", 1, 3, 0o666);
        assert_eq!(s.get("/linux/devices/0/major"), Some(&serde_json::json!(1)));
    }
}
