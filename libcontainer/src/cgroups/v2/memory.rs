//! v2 `memory`: `memory.max` (limit), `memory.low` (reservation),
//! `memory.swap.max` (swap alone: OCI's `swap` is memory+swap, so the
//! difference); statistics from `memory.stat`, `memory.current`,
//! `memory.max`, `memory.peak` (5.19+) and their `swap` twins; the OOM kill
//! count from `memory.events`.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::num_to_str;
use crate::cgroups::stats::{missing, read_keyed, read_u64, read_u64_opt, Memory, MemoryEntry};
use crate::cgroups::{files, Error, Result};

/// Written in runc's order: swap, then the limit, then the reservation.
pub fn apply(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let swap = swap_max(limit, m.swap().unwrap_or(0))?;
    if limit > 0 && m.check_before_update() == Some(true) {
        if let Some(current) = files::read_opt(dir, "memory.current")? {
            if current.trim().parse::<i64>().is_ok_and(|c| c > limit) {
                return Err(Error::Invalid {
                    field: "linux.resources.memory.limit",
                    reason: format!("{limit} is below the current usage {}", current.trim()),
                });
            }
        }
    }
    if let Some(swap) = swap {
        match files::write(dir, "memory.swap.max", &swap) {
            Ok(()) => {}
            // No swap accounting: lifting or forbidding swap is moot.
            Err(e) if files::is_write_missing(&e) && (swap == "max" || swap == "0") => {}
            Err(e) if files::is_write_missing(&e) => {
                return Err(Error::Unsupported(format!("linux.resources.memory.swap (no swap accounting: {e})")))
            }
            Err(e) => return Err(e.in_field("linux.resources.memory.swap")),
        }
    }
    if let Some(v) = num_to_str(limit) {
        files::write(dir, "memory.max", &v).map_err(|e| e.in_field("linux.resources.memory.limit"))?;
    }
    if let Some(v) = num_to_str(m.reservation().unwrap_or(0)) {
        files::write(dir, "memory.low", &v).map_err(|e| e.in_field("linux.resources.memory.reservation"))?;
    }
    #[allow(deprecated)]
    let v1_only = [
        ("linux.resources.memory.swappiness", m.swappiness().is_some()),
        ("linux.resources.memory.disableOOMKiller", m.disable_oom_killer() == Some(true)),
        ("linux.resources.memory.kernelTCP", m.kernel_tcp().is_some_and(|k| k != 0)),
        ("linux.resources.memory.kernel", m.kernel().is_some_and(|k| k != 0)),
    ];
    for (field, set) in v1_only {
        if set {
            tracing::warn!(field, "cgroup v2 has no such knob; ignored");
        }
    }
    Ok(())
}

/// `memory.swap.max` from OCI's memory+swap `swap` and `limit` (runc's
/// conversion): `None` writes nothing.
pub(crate) fn swap_max(limit: i64, swap: i64) -> Result<Option<String>> {
    let invalid = |reason: String| Error::Invalid { field: "linux.resources.memory.swap", reason };
    // Lifting the memory limit lifts swap too unless told otherwise.
    if limit == -1 && swap == 0 {
        return Ok(Some("max".to_owned()));
    }
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some("max".to_owned())),
        _ => {}
    }
    if limit == 0 || limit == -1 {
        return Err(invalid(format!("a memory+swap limit ({swap}) needs a memory limit")));
    }
    if limit < 0 || swap < 0 {
        return Err(invalid(format!("negative limits other than -1 (memory {limit}, memory+swap {swap})")));
    }
    if swap < limit {
        return Err(invalid(format!("memory+swap limit {swap} is below the memory limit {limit}")));
    }
    // Equal values: no swap at all, written as "0".
    Ok(Some((swap - limit).to_string()))
}

/// `memory.<name>.current`, `.max`, `.peak`; `None` without `.current`.
fn entry(dir: &Path, prefix: &str) -> Result<Option<MemoryEntry>> {
    let Some(usage) = read_u64_opt(dir, &format!("{prefix}.current"))? else {
        return Ok(None);
    };
    Ok(Some(MemoryEntry {
        usage,
        limit: read_u64(dir, &format!("{prefix}.max"))?,
        max: read_u64_opt(dir, &format!("{prefix}.peak"))?.unwrap_or(0),
        failcnt: 0,
    }))
}

/// As runc: `cache` is `memory.stat`'s `file`, and `swap` is memory+swap
/// like v1's (usage and limit added up; no limit stays 2^64-1).
pub fn stats(dir: &Path, m: &mut Memory) -> Result<()> {
    m.raw = read_keyed(dir, "memory.stat")?.ok_or_else(|| missing(dir, "memory.stat"))?;
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    m.usage = entry(dir, "memory")?.ok_or_else(|| missing(dir, "memory.current"))?;
    // No swap accounting (no memory.swap.current): zero, as runc.
    if let Some(swap) = entry(dir, "memory.swap")? {
        m.swap = MemoryEntry {
            usage: swap.usage.saturating_add(m.usage.usage),
            limit: if swap.limit == u64::MAX { u64::MAX } else { swap.limit.saturating_add(m.usage.limit) },
            max: 0,
            failcnt: 0,
        };
    }
    Ok(())
}

/// The `oom_kill` count of `memory.events`: processes the OOM killer killed
/// in this cgroup and below.
pub fn oom_kill_count(dir: &Path) -> Result<u64> {
    let events = read_keyed(dir, "memory.events")?.ok_or_else(|| missing(dir, "memory.events"))?;
    events.get("oom_kill").copied().ok_or_else(|| {
        Error::Unsupported(format!("counting OOM kills (no oom_kill line in {})", dir.join("memory.events").display()))
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn s(limit: i64, swap: i64) -> Option<String> {
        swap_max(limit, swap).unwrap()
    }

    #[test]
    fn swap_is_memory_plus_swap_minus_memory() {
        assert_eq!(s(100, 300).as_deref(), Some("200"));
        assert_eq!(s(100, 100).as_deref(), Some("0"));
        assert_eq!(s(100, -1).as_deref(), Some("max"));
        assert_eq!(s(-1, 0).as_deref(), Some("max"));
        assert_eq!(s(-1, -1).as_deref(), Some("max"));
        assert_eq!(s(100, 0), None);
        assert_eq!(s(0, 0), None);
        for (limit, swap) in [(0, 100), (-1, 100), (200, 100), (-5, 100)] {
            let e = swap_max(limit, swap).unwrap_err();
            assert!(e.to_string().contains("linux.resources.memory.swap"), "{e}");
        }
    }

    fn fake(dir: &Path, swap: bool) {
        for f in ["memory.max", "memory.low", "memory.current"] {
            fs::write(dir.join(f), "0\n").unwrap();
        }
        if swap {
            fs::write(dir.join("memory.swap.max"), "max\n").unwrap();
        }
    }

    fn mem(json: &str) -> LinuxMemory {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn files_get_the_values() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), true);
        apply(t.path(), &mem(r#"{"limit":104857600,"reservation":52428800,"swap":209715200}"#)).unwrap();
        let read = |f| files::read(t.path(), f).unwrap();
        assert_eq!(read("memory.max"), "104857600");
        assert_eq!(read("memory.low"), "52428800");
        assert_eq!(read("memory.swap.max"), "104857600");
        apply(t.path(), &mem(r#"{"limit":-1}"#)).unwrap();
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("memory.swap.max"), "max");
        assert_eq!(read("memory.low"), "52428800", "unset, so untouched");
    }

    #[test]
    fn without_swap_accounting_only_a_real_swap_limit_fails() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), false);
        apply(t.path(), &mem(r#"{"limit":100,"swap":100}"#)).unwrap();
        apply(t.path(), &mem(r#"{"limit":-1}"#)).unwrap();
        let e = apply(t.path(), &mem(r#"{"limit":100,"swap":200}"#)).unwrap_err();
        assert!(e.to_string().contains("linux.resources.memory.swap"), "{e}");
    }

    #[test]
    fn stats_add_memory_to_swap_and_oom_kills() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for (f, v) in [
            ("memory.stat", "anon 8192\nfile 4096\n"),
            ("memory.current", "12288\n"),
            ("memory.max", "1048576\n"),
            ("memory.peak", "20480\n"),
            ("memory.swap.current", "4096\n"),
            ("memory.swap.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n"),
        ] {
            fs::write(d.join(f), v).unwrap();
        }
        let mut m = Memory::default();
        stats(d, &mut m).unwrap();
        assert_eq!(m.cache, 4096);
        assert_eq!(m.raw["anon"], 8192);
        assert_eq!(m.usage, MemoryEntry { limit: 1048576, usage: 12288, max: 20480, failcnt: 0 });
        assert_eq!(m.swap, MemoryEntry { limit: u64::MAX, usage: 16384, max: 0, failcnt: 0 });
        fs::write(d.join("memory.swap.max"), "0\n").unwrap();
        stats(d, &mut m).unwrap();
        assert_eq!(m.swap.limit, 1048576);
        assert_eq!(oom_kill_count(d).unwrap(), 1);
        fs::remove_file(d.join("memory.swap.current")).unwrap();
        let mut m = Memory::default();
        stats(d, &mut m).unwrap();
        assert_eq!(m.swap, MemoryEntry::default());
        fs::remove_file(d.join("memory.current")).unwrap();
        assert!(stats(d, &mut m).unwrap_err().to_string().contains("memory.current"));
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), true);
        fs::write(t.path().join("memory.current"), "5000\n").unwrap();
        apply(t.path(), &mem(r#"{"limit":4096}"#)).unwrap();
        let e = apply(t.path(), &mem(r#"{"limit":4096,"checkBeforeUpdate":true}"#)).unwrap_err();
        assert!(e.to_string().contains("below the current usage 5000"), "{e}");
    }
}
