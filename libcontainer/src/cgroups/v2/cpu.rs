//! v2 `cpu`: `cpu.weight` (from OCI's v1-style shares), `cpu.max` (quota and
//! period), `cpu.max.burst`, `cpu.idle`; statistics from `cpu.stat`.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::cgroups::stats::{read_keyed, Cpu};
use crate::cgroups::{files, Result};

/// Each value the kernel refuses (`EINVAL`: a quota above the parent's,
/// a burst above the quota) is an error naming its field.
pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(weight) = c.shares().and_then(shares_to_weight) {
        files::write(dir, "cpu.weight", &weight.to_string()).map_err(|e| e.in_field("linux.resources.cpu.shares"))?;
    }
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let current = files::read_opt(dir, "cpu.max")?.unwrap_or_default();
        let field = if quota.is_some() { "linux.resources.cpu.quota" } else { "linux.resources.cpu.period" };
        files::write(dir, "cpu.max", &cpu_max(quota, period, &current)).map_err(|e| e.in_field(field))?;
    }
    if let Some(burst) = c.burst() {
        files::write(dir, "cpu.max.burst", &burst.to_string()).map_err(|e| e.in_field("linux.resources.cpu.burst"))?;
    }
    if let Some(idle) = c.idle() {
        files::write(dir, "cpu.idle", &idle.to_string()).map_err(|e| e.in_field("linux.resources.cpu.idle"))?;
    }
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        tracing::warn!(field = "linux.resources.cpu.realtimeRuntime", "cgroup v2 has no realtime budget; ignored");
    }
    Ok(())
}

/// runc's conversion of v1 shares (2..=262144, clamped as v1 clamps) to v2
/// weight (1..=10000); 1024, v1's default, becomes 39. Zero is unset.
pub(crate) fn shares_to_weight(shares: u64) -> Option<u64> {
    if shares == 0 {
        return None;
    }
    let shares = shares.clamp(2, 262_144);
    Some(1 + ((shares - 2) * 9999) / 262_142)
}

/// `cpu.max` is `"$QUOTA $PERIOD"`, `max` for no quota. A period alone
/// keeps the current quota; a quota alone keeps the current period (by
/// leaving it out).
pub(crate) fn cpu_max(quota: Option<i64>, period: Option<u64>, current: &str) -> String {
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_owned(),
        None => current.split_whitespace().next().unwrap_or("max").to_owned(),
    };
    match period {
        Some(p) => format!("{quota} {p}"),
        None => quota,
    }
}

/// `cpu.stat`, microseconds converted to nanoseconds. Its usage lines are
/// there for every cgroup; the throttling lines only with the `cpu`
/// controller enabled.
pub fn stats(dir: &Path, c: &mut Cpu) -> Result<()> {
    let Some(stat) = read_keyed(dir, "cpu.stat")? else {
        return Ok(());
    };
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    c.usage.total = get("usage_usec").saturating_mul(1000);
    c.usage.user = get("user_usec").saturating_mul(1000);
    c.usage.kernel = get("system_usec").saturating_mul(1000);
    c.throttling.periods = get("nr_periods");
    c.throttling.throttled_periods = get("nr_throttled");
    c.throttling.throttled_time = get("throttled_usec").saturating_mul(1000);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn shares_to_weight_like_runc() {
        assert_eq!(shares_to_weight(0), None);
        assert_eq!(shares_to_weight(2), Some(1));
        assert_eq!(shares_to_weight(1024), Some(39));
        assert_eq!(shares_to_weight(262_144), Some(10_000));
        assert_eq!(shares_to_weight(1), Some(1), "clamped, no underflow");
        assert_eq!(shares_to_weight(u64::MAX), Some(10_000));
    }

    #[test]
    fn cpu_max_values() {
        assert_eq!(cpu_max(Some(50_000), Some(100_000), "max 100000"), "50000 100000");
        assert_eq!(cpu_max(Some(-1), Some(20_000), "1 100000"), "max 20000");
        assert_eq!(cpu_max(None, Some(20_000), "max 100000"), "max 20000");
        assert_eq!(cpu_max(None, Some(20_000), "30000 100000"), "30000 20000");
        assert_eq!(cpu_max(Some(30_000), None, "max 100000"), "30000");
    }

    #[test]
    fn stats_in_nanoseconds() {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 20\n",
        )
        .unwrap();
        let mut c = crate::cgroups::stats::Cpu::default();
        stats(t.path(), &mut c).unwrap();
        assert_eq!((c.usage.total, c.usage.user, c.usage.kernel), (1_500_000, 1_000_000, 500_000));
        assert_eq!((c.throttling.periods, c.throttling.throttled_periods, c.throttling.throttled_time), (4, 1, 20_000));
        assert!(c.usage.percpu.is_empty());
    }

    #[test]
    fn files_get_the_values() {
        let t = tempfile::tempdir().unwrap();
        for (f, v) in [("cpu.weight", "100"), ("cpu.max", "max 100000"), ("cpu.max.burst", "0"), ("cpu.idle", "0")] {
            fs::write(t.path().join(f), v).unwrap();
        }
        let c: LinuxCpu = serde_json::from_str(r#"{"shares":1024,"quota":25000,"period":50000,"idle":1}"#).unwrap();
        apply(t.path(), &c).unwrap();
        let read = |f| files::read(t.path(), f).unwrap();
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "25000 50000");
        assert_eq!(read("cpu.idle"), "1");
        assert_eq!(read("cpu.max.burst"), "0", "unset, so untouched");
    }
}
