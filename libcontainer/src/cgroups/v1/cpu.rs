//! v1 `cpu`: `cpu.shares`, `cpu.cfs_quota_us`, `cpu.cfs_period_us`,
//! `cpu.cfs_burst_us`, `cpu.rt_period_us`, `cpu.rt_runtime_us`, `cpu.idle`;
//! throttling statistics from `cpu.stat`.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::cgroups::stats::{read_keyed, Throttling};
use crate::cgroups::{files, Error, Result};

const SHARES: &str = "cpu.shares";
const QUOTA: &str = "cpu.cfs_quota_us";
const PERIOD: &str = "cpu.cfs_period_us";
const F_SHARES: &str = "linux.resources.cpu.shares";
const F_QUOTA: &str = "linux.resources.cpu.quota";
const F_PERIOD: &str = "linux.resources.cpu.period";

/// Each value the kernel refuses (`EINVAL`: a quota above the parent's,
/// a burst above the quota) is an error naming its field.
pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares().filter(|&s| s != 0) {
        files::write(dir, SHARES, &shares.to_string()).map_err(|e| e.in_field(F_SHARES))?;
        // The kernel clamps to 2..=262144 silently; say so instead.
        let got = files::read(dir, SHARES)?;
        if got.trim() != shares.to_string() {
            return Err(Error::Invalid { field: F_SHARES, reason: format!("the kernel took {shares} as {}", got.trim()) });
        }
    }
    let quota = c.quota().filter(|&q| q != 0).map(|q| if q < 0 { -1 } else { q });
    let mut period_pending = None;
    if let Some(period) = c.period().filter(|&p| p != 0) {
        match files::write(dir, PERIOD, &period.to_string()) {
            Ok(()) => {}
            // A shorter period can make the current quota exceed the parent's
            // bandwidth (EINVAL); retry once the new quota is in.
            Err(e) if quota.is_some() && files::is_write_errno(&e, libc::EINVAL) => period_pending = Some(period),
            Err(e) => return Err(e.in_field(F_PERIOD)),
        }
    }
    if let Some(quota) = quota {
        files::write(dir, QUOTA, &quota.to_string()).map_err(|e| e.in_field(F_QUOTA))?;
        if let Some(period) = period_pending {
            files::write(dir, PERIOD, &period.to_string()).map_err(|e| e.in_field(F_PERIOD))?;
        }
    }
    if let Some(burst) = c.burst() {
        files::write(dir, "cpu.cfs_burst_us", &burst.to_string()).map_err(|e| e.in_field("linux.resources.cpu.burst"))?;
    }
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        files::write(dir, "cpu.rt_period_us", &p.to_string()).map_err(|e| e.in_field("linux.resources.cpu.realtimePeriod"))?;
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
        files::write(dir, "cpu.rt_runtime_us", &r.to_string()).map_err(|e| e.in_field("linux.resources.cpu.realtimeRuntime"))?;
    }
    if let Some(idle) = c.idle() {
        files::write(dir, "cpu.idle", &idle.to_string()).map_err(|e| e.in_field("linux.resources.cpu.idle"))?;
    }
    Ok(())
}

/// `cpu.stat`: `nr_periods`, `nr_throttled`, `throttled_time` (already
/// nanoseconds in v1).
pub fn throttling(dir: &Path, t: &mut Throttling) -> Result<()> {
    if let Some(stat) = read_keyed(dir, "cpu.stat")? {
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        t.periods = get("nr_periods");
        t.throttled_periods = get("nr_throttled");
        t.throttled_time = get("throttled_time");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fake(dir: &Path) {
        for (f, v) in [(SHARES, "1024"), (QUOTA, "-1"), (PERIOD, "100000"), ("cpu.cfs_burst_us", "0"), ("cpu.idle", "0")] {
            fs::write(dir.join(f), format!("{v}\n")).unwrap();
        }
    }

    #[test]
    fn files_get_the_values_and_unset_ones_are_left() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path());
        let c: LinuxCpu = serde_json::from_str(r#"{"shares":512,"quota":50000,"period":200000,"burst":1000}"#).unwrap();
        apply(t.path(), &c).unwrap();
        let read = |f| files::read(t.path(), f).unwrap();
        assert_eq!(read(SHARES), "512");
        assert_eq!(read(QUOTA), "50000");
        assert_eq!(read(PERIOD), "200000");
        assert_eq!(read("cpu.cfs_burst_us"), "1000");
        assert_eq!(read("cpu.idle"), "0");
        // A negative quota lifts the limit; zero shares mean "unset".
        let c: LinuxCpu = serde_json::from_str(r#"{"shares":0,"quota":-5}"#).unwrap();
        apply(t.path(), &c).unwrap();
        assert_eq!(read(QUOTA), "-1");
        assert_eq!(read(SHARES), "512");
    }

    #[test]
    fn throttling_from_cpu_stat() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cpu.stat"), "nr_periods 10\nnr_throttled 3\nthrottled_time 4500\nnr_bursts 0\n").unwrap();
        let mut th = Throttling::default();
        throttling(t.path(), &mut th).unwrap();
        assert_eq!((th.periods, th.throttled_periods, th.throttled_time), (10, 3, 4500));
    }

    #[test]
    fn realtime_needs_its_files() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path());
        let c: LinuxCpu = serde_json::from_str(r#"{"realtimeRuntime":1000}"#).unwrap();
        let e = apply(t.path(), &c).unwrap_err();
        assert!(e.to_string().starts_with("linux.resources.cpu.realtimeRuntime: write \"1000\" to "), "{e}");
        assert!(e.to_string().contains("cpu.rt_runtime_us"), "{e}");
    }
}
