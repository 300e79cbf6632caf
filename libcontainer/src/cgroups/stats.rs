//! The statistics `roci events` reports: the `data` of runc's `stats`
//! event (`types/events.go`), field for field, with Go's `omitempty` as
//! `skip_serializing_if`. Filled per controller by the v1 and v2 files (each
//! controller's `stats` function); what a host lacks stays zero.
//!
//! Left out: runc's `cpuset`, `intel_rdt`, `network_interfaces`, the PSI
//! blocks and `memory.event_count` (newer runc only); a consumer decoding
//! runc's type reads them as empty.
//!
//! Units as runc: nanoseconds for CPU time (v2's microseconds and v1's clock
//! ticks are converted), bytes for memory, and "no limit" as the kernel's
//! own number on v1 (`memory.limit_in_bytes` 9223372036854771712) and as
//! 2^64-1 for v2's `max`; `pids.limit` 0 when there is none.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{files, Error, Result};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// By page size as the kernel names it (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    /// Memory+swap, as v1 counts it (v2's swap-only numbers plus memory's).
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// `memory.stat`, as the kernel names its keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Blkio {
    #[serde(rename = "ioServiceBytesRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServiceTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

// Parsing shared by the controllers' `stats` functions.

fn parse_error(dir: &Path, file: &str, line: usize, reason: String) -> Error {
    Error::Parse { path: dir.join(file), line, reason }
}

/// The error for a control file that should be there and is not.
pub(crate) fn missing(dir: &Path, file: &str) -> Error {
    Error::Read { path: dir.join(file), source: std::io::Error::from_raw_os_error(libc::ENOENT) }
}

/// A cgroup number: decimal, or `max` (v2) as `u64::MAX`.
pub(crate) fn parse_u64(dir: &Path, file: &str, line: usize, s: &str) -> Result<u64> {
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse().map_err(|_| parse_error(dir, file, line, format!("not a number: {s:?}")))
}

/// A file holding one number; `None` when the file does not exist.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    files::read_opt(dir, file)?.map(|s| parse_u64(dir, file, 1, &s)).transpose()
}

pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    parse_u64(dir, file, 1, &files::read(dir, file)?)
}

/// A flat keyed file (`memory.stat`, `cpu.stat`, `memory.events`):
/// `key value` lines. `None` when the file does not exist.
pub(crate) fn read_keyed(dir: &Path, file: &str) -> Result<Option<BTreeMap<String, u64>>> {
    let Some(text) = files::read_opt(dir, file)? else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(parse_error(dir, file, i + 1, format!("not a `key value` line: {line:?}")));
        };
        out.insert(key.to_owned(), parse_u64(dir, file, i + 1, value)?);
    }
    Ok(Some(out))
}

/// A space-separated list of numbers (`cpuacct.usage_percpu`).
pub(crate) fn read_list(dir: &Path, file: &str) -> Result<Option<Vec<u64>>> {
    let Some(text) = files::read_opt(dir, file)? else {
        return Ok(None);
    };
    text.split_whitespace().map(|v| parse_u64(dir, file, 1, v)).collect::<Result<Vec<_>>>().map(Some)
}

/// `major:minor` of a block device line.
pub(crate) fn parse_dev(dir: &Path, file: &str, line: usize, s: &str) -> Result<(u64, u64)> {
    let bad = || parse_error(dir, file, line, format!("not a major:minor device: {s:?}"));
    let (major, minor) = s.split_once(':').ok_or_else(bad)?;
    Ok((major.parse().map_err(|_| bad())?, minor.parse().map_err(|_| bad())?))
}

/// The page sizes a hugetlb directory has files for: the `<size>` of
/// `hugetlb.<size>.<suffix>` (reservation files excluded), sorted.
pub(crate) fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => return Err(Error::Read { path: dir.to_owned(), source }),
    };
    let mut sizes: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| Some(name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?.strip_suffix('.')?.to_owned()))
        .filter(|size| !size.contains('.'))
        .collect();
    sizes.sort();
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn empty_stats_serialise_like_runcs() {
        // What runc 1.1 prints for a container with nothing to report, minus
        // the fields left out (cpuset, intel_rdt, network_interfaces).
        let json = serde_json::to_string(&Stats::default()).unwrap();
        assert_eq!(
            json,
            r#"{"cpu":{"usage":{"kernel":0,"user":0},"throttling":{}},"memory":{"usage":{"limit":0,"failcnt":0},"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0}},"pids":{},"blkio":{},"hugetlb":{}}"#
        );
        // runc's output (with fields we leave out) decodes.
        let runc = r#"{"cpu":{"usage":{"total":5,"percpu":[2,3],"kernel":1,"user":4},"throttling":{"periods":7,"throttledPeriods":2,"throttledTime":9}},
            "cpuset":{"cpu_exclusive":0},"memory":{"cache":8,"usage":{"limit":10,"usage":6,"max":7,"failcnt":1},"swap":{"limit":20,"failcnt":0},
            "kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0},"raw":{"cache":8}},"pids":{"current":3,"limit":10},
            "blkio":{"ioServiceBytesRecursive":[{"major":8,"op":"Read","value":4096}]},"hugetlb":{"2MB":{"failcnt":0}},
            "intel_rdt":{},"network_interfaces":null}"#;
        let s: Stats = serde_json::from_str(runc).unwrap();
        assert_eq!(s.cpu.throttling.throttled_periods, 2);
        assert_eq!(s.memory.usage.max, 7);
        assert_eq!(s.blkio.io_service_bytes_recursive[0].minor, 0);
        assert_eq!(s.hugetlb["2MB"], Hugetlb::default());
        assert_eq!(serde_json::from_str::<Stats>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn parsers_name_the_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("memory.stat"), "cache 10\nrss 20\n\n").unwrap();
        fs::write(d.join("bad.stat"), "cache 10\nrss\n").unwrap();
        fs::write(d.join("memory.max"), "max\n").unwrap();
        fs::write(d.join("list"), "1 2 3 \n").unwrap();
        let m = read_keyed(d, "memory.stat").unwrap().unwrap();
        assert_eq!(m["rss"], 20);
        let e = read_keyed(d, "bad.stat").unwrap_err().to_string();
        assert!(e.contains("bad.stat line 2"), "{e}");
        assert_eq!(read_keyed(d, "none").unwrap(), None);
        assert_eq!(read_u64(d, "memory.max").unwrap(), u64::MAX);
        assert_eq!(read_u64_opt(d, "none").unwrap(), None);
        assert_eq!(read_list(d, "list").unwrap().unwrap(), [1, 2, 3]);
        assert_eq!(parse_dev(d, "f", 1, "8:16").unwrap(), (8, 16));
        assert!(parse_dev(d, "f", 1, "8-16").is_err());
        for f in ["hugetlb.2MB.max", "hugetlb.2MB.rsvd.max", "hugetlb.1GB.max", "hugetlb.2MB.current", "other.max"] {
            fs::write(d.join(f), "").unwrap();
        }
        assert_eq!(hugetlb_sizes(d, "max").unwrap(), ["1GB", "2MB"]);
    }
}
