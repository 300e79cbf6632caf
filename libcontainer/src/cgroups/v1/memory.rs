//! v1 `memory`: `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`
//! (memory+swap, as OCI's `swap` is), `memory.soft_limit_in_bytes`
//! (reservation), `memory.swappiness`, `memory.oom_control`,
//! `memory.kmem.tcp.limit_in_bytes`; statistics from `memory.stat` and the
//! `usage_in_bytes`, `max_usage_in_bytes`, `limit_in_bytes`, `failcnt` of
//! memory, memory+swap (`memsw`), kernel (`kmem`) and kernel TCP
//! (`kmem.tcp`); the OOM kill count from `memory.oom_control`.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::cgroups::stats::{missing, read_keyed, read_u64, read_u64_opt, Memory, MemoryEntry};
use crate::cgroups::{files, Error, Result};

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";
const SOFT: &str = "memory.soft_limit_in_bytes";
const SWAPPINESS: &str = "memory.swappiness";
const OOM_CONTROL: &str = "memory.oom_control";
const KMEM_TCP: &str = "memory.kmem.tcp.limit_in_bytes";

pub fn apply(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    if limit > 0 && swap > 0 && swap < limit {
        return Err(Error::Invalid {
            field: "linux.resources.memory.swap",
            reason: format!("memory+swap limit {swap} is below the memory limit {limit}"),
        });
    }
    let have_memsw = files::exists(dir, MEMSW);
    // Lifting the memory limit lifts memory+swap too unless told otherwise
    // (it could not stay below the limit anyway).
    if limit == -1 && swap == 0 && have_memsw {
        swap = -1;
    }
    if swap != 0 && !have_memsw {
        if swap != -1 {
            return Err(Error::Unsupported(format!(
                "linux.resources.memory.swap (no swap accounting: {} is missing)",
                dir.join(MEMSW).display()
            )));
        }
        swap = 0; // nothing to lift
    }
    let current = || -> Result<u64> {
        let s = files::read(dir, LIMIT)?;
        s.trim().parse().map_err(|_| Error::Parse { path: dir.join(LIMIT), line: 1, reason: format!("not a number: {s:?}") })
    };
    for (file, value) in limit_writes(limit, swap, current)? {
        files::write(dir, file, &value.to_string()).map_err(|e| below_usage(dir, file, value, e))?;
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        files::write(dir, SOFT, &r.to_string()).map_err(|e| e.in_field("linux.resources.memory.reservation"))?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::Invalid { field: "linux.resources.memory.swappiness", reason: format!("{s} is not in 0-100") });
        }
        files::write(dir, SWAPPINESS, &s.to_string()).map_err(|e| e.in_field("linux.resources.memory.swappiness"))?;
    }
    if m.disable_oom_killer() == Some(true) {
        files::write(dir, OOM_CONTROL, "1").map_err(|e| e.in_field("linux.resources.memory.disableOOMKiller"))?;
    }
    if let Some(k) = m.kernel_tcp().filter(|&k| k != 0) {
        files::write(dir, KMEM_TCP, &k.to_string()).map_err(|e| e.in_field("linux.resources.memory.kernelTCP"))?;
    }
    #[allow(deprecated)]
    if m.kernel().is_some_and(|k| k != 0) {
        tracing::warn!("linux.resources.memory.kernel is deprecated and ignored");
    }
    Ok(())
}

/// The writes of the memory limit and memory+swap, in the order the kernel
/// accepts: it refuses, at every step, a limit above memory+swap. Raising
/// memory+swap above the current limit goes first; lowering goes last.
/// `current` reads the current limit, only when both are set.
fn limit_writes(limit: i64, swap: i64, current: impl FnOnce() -> Result<u64>) -> Result<Vec<(&'static str, i64)>> {
    if limit != 0 && swap != 0 {
        let swap_first = swap == -1 || current()? < swap as u64;
        return Ok(if swap_first { vec![(MEMSW, swap), (LIMIT, limit)] } else { vec![(LIMIT, limit), (MEMSW, swap)] });
    }
    Ok([(LIMIT, limit), (MEMSW, swap)].into_iter().filter(|&(_, v)| v != 0).collect())
}

/// `EBUSY` on the limit: the kernel could not reclaim down to it.
fn below_usage(dir: &Path, file: &str, value: i64, e: Error) -> Error {
    if file != LIMIT || !files::is_write_errno(&e, libc::EBUSY) {
        let field = if file == LIMIT { "linux.resources.memory.limit" } else { "linux.resources.memory.swap" };
        return e.in_field(field);
    }
    let usage = files::read(dir, "memory.usage_in_bytes").unwrap_or_default();
    let peak = files::read(dir, "memory.max_usage_in_bytes").unwrap_or_default();
    Error::Invalid {
        field: "linux.resources.memory.limit",
        reason: format!("{value} is below what the cgroup uses and cannot be reclaimed (usage {usage}, peak {peak}): {e}"),
    }
}

/// The four numbers of `memory.<name>.*` (`memory.*` for an empty name).
/// A missing optional group (no swap accounting, no kmem) reads as zero,
/// as runc reports it.
fn entry(dir: &Path, name: &str) -> Result<MemoryEntry> {
    let prefix = if name.is_empty() { "memory".to_owned() } else { format!("memory.{name}") };
    let Some(usage) = read_u64_opt(dir, &format!("{prefix}.usage_in_bytes"))? else {
        if name.is_empty() {
            // The memory controller's own files are not optional.
            read_u64(dir, "memory.usage_in_bytes")?;
        }
        return Ok(MemoryEntry::default());
    };
    Ok(MemoryEntry {
        usage,
        max: read_u64(dir, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: read_u64(dir, &format!("{prefix}.failcnt"))?,
        limit: read_u64(dir, &format!("{prefix}.limit_in_bytes"))?,
    })
}

pub fn stats(dir: &Path, m: &mut Memory) -> Result<()> {
    m.raw = read_keyed(dir, "memory.stat")?.unwrap_or_default();
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    m.usage = entry(dir, "")?;
    m.swap = entry(dir, "memsw")?;
    m.kernel = entry(dir, "kmem")?;
    m.kernel_tcp = entry(dir, "kmem.tcp")?;
    Ok(())
}

/// The `oom_kill` line of `memory.oom_control` (4.13+): processes the OOM
/// killer killed in this cgroup and below.
pub fn oom_kill_count(dir: &Path) -> Result<u64> {
    let control = read_keyed(dir, OOM_CONTROL)?.ok_or_else(|| missing(dir, OOM_CONTROL))?;
    control.get("oom_kill").copied().ok_or_else(|| {
        Error::Unsupported(format!("counting OOM kills (no oom_kill line in {})", dir.join(OOM_CONTROL).display()))
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const NO_LIMIT: u64 = 9223372036854771712;

    fn order(limit: i64, swap: i64, cur: u64) -> Vec<(&'static str, i64)> {
        limit_writes(limit, swap, || Ok(cur)).unwrap()
    }

    #[test]
    fn raising_writes_memsw_first_lowering_writes_it_last() {
        // Fresh cgroup: both unlimited, so the limit can go first.
        assert_eq!(order(100, 200, NO_LIMIT), [(LIMIT, 100), (MEMSW, 200)]);
        // Update from a 100 limit to 300/400: memsw must go up first.
        assert_eq!(order(300, 400, 100), [(MEMSW, 400), (LIMIT, 300)]);
        // Lifting both: memsw first.
        assert_eq!(order(-1, -1, 100), [(MEMSW, -1), (LIMIT, -1)]);
        assert_eq!(order(100, 0, 5), [(LIMIT, 100)]);
        assert_eq!(order(0, 300, 5), [(MEMSW, 300)]);
        assert!(order(0, 0, 5).is_empty());
        // The current limit is only read when both are set.
        assert!(limit_writes(100, 0, || panic!("read")).is_ok());
    }

    fn fake(dir: &Path, memsw: bool) {
        for f in [LIMIT, SOFT, SWAPPINESS, OOM_CONTROL, KMEM_TCP] {
            fs::write(dir.join(f), format!("{NO_LIMIT}\n")).unwrap();
        }
        if memsw {
            fs::write(dir.join(MEMSW), format!("{NO_LIMIT}\n")).unwrap();
        }
    }

    fn mem(json: &str) -> LinuxMemory {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn files_get_the_values() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), true);
        apply(
            t.path(),
            &mem(r#"{"limit":104857600,"reservation":52428800,"swap":209715200,"swappiness":10,"disableOOMKiller":true}"#),
        )
        .unwrap();
        let read = |f| files::read(t.path(), f).unwrap();
        assert_eq!(read(LIMIT), "104857600");
        assert_eq!(read(MEMSW), "209715200");
        assert_eq!(read(SOFT), "52428800");
        assert_eq!(read(SWAPPINESS), "10");
        assert_eq!(read(OOM_CONTROL), "1");
        assert_eq!(read(KMEM_TCP), NO_LIMIT.to_string(), "unset, so untouched");
    }

    #[test]
    fn unlimited_memory_lifts_memsw_when_there_is_swap_accounting() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), true);
        apply(t.path(), &mem(r#"{"limit":-1}"#)).unwrap();
        assert_eq!(files::read(t.path(), MEMSW).unwrap(), "-1");
        assert_eq!(files::read(t.path(), LIMIT).unwrap(), "-1");
        let u = tempfile::tempdir().unwrap();
        fake(u.path(), false);
        apply(u.path(), &mem(r#"{"limit":-1,"swap":-1}"#)).unwrap();
        assert_eq!(files::read(u.path(), LIMIT).unwrap(), "-1");
    }

    #[test]
    fn stats_and_oom_kills() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for (f, v) in [
            ("memory.stat", "cache 4096\nrss 8192\ntotal_cache 4096\n"),
            ("memory.usage_in_bytes", "12288\n"),
            ("memory.max_usage_in_bytes", "20480\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.failcnt", "2\n"),
            ("memory.memsw.usage_in_bytes", "12288\n"),
            ("memory.memsw.max_usage_in_bytes", "20480\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.failcnt", "0\n"),
            (OOM_CONTROL, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
        ] {
            fs::write(d.join(f), v).unwrap();
        }
        let mut m = Memory::default();
        stats(d, &mut m).unwrap();
        assert_eq!(m.cache, 4096);
        assert_eq!(m.raw["rss"], 8192);
        assert_eq!(m.usage, MemoryEntry { limit: NO_LIMIT, usage: 12288, max: 20480, failcnt: 2 });
        assert_eq!(m.swap.usage, 12288);
        assert_eq!(m.kernel, MemoryEntry::default(), "no kmem files: zero");
        assert_eq!(oom_kill_count(d).unwrap(), 3);
        fs::write(d.join(OOM_CONTROL), "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert!(oom_kill_count(d).unwrap_err().to_string().contains("no oom_kill line"));
        fs::remove_file(d.join("memory.usage_in_bytes")).unwrap();
        assert!(stats(d, &mut m).unwrap_err().to_string().contains("memory.usage_in_bytes"));
    }

    #[test]
    fn bad_combinations_name_the_field() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), false);
        let e = apply(t.path(), &mem(r#"{"limit":200,"swap":100}"#)).unwrap_err();
        assert!(e.to_string().contains("linux.resources.memory.swap"), "{e}");
        let e = apply(t.path(), &mem(r#"{"limit":200,"swap":300}"#)).unwrap_err();
        assert!(e.to_string().contains("memory.memsw.limit_in_bytes is missing"), "{e}");
        let e = apply(t.path(), &mem(r#"{"swappiness":101}"#)).unwrap_err();
        assert!(e.to_string().contains("linux.resources.memory.swappiness"), "{e}");
    }
}
