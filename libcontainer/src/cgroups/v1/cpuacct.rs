//! v1 `cpuacct` (statistics only): `cpuacct.usage`,
//! `cpuacct.usage_percpu`, `cpuacct.usage_percpu_sys`,
//! `cpuacct.usage_percpu_user` (4.7+), `cpuacct.stat`.

use std::path::Path;

use crate::cgroups::stats::{read_keyed, read_list, read_u64, CpuUsage};
use crate::cgroups::Result;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// `cpuacct.stat` counts in clock ticks (`USER_HZ`, 100 on Linux).
fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

pub fn stats(dir: &Path, u: &mut CpuUsage) -> Result<()> {
    stats_with_ticks(dir, u, clock_ticks())
}

fn stats_with_ticks(dir: &Path, u: &mut CpuUsage, ticks: u64) -> Result<()> {
    u.total = read_u64(dir, "cpuacct.usage")?;
    u.percpu = read_list(dir, "cpuacct.usage_percpu")?.unwrap_or_default();
    u.percpu_kernel = read_list(dir, "cpuacct.usage_percpu_sys")?.unwrap_or_default();
    u.percpu_user = read_list(dir, "cpuacct.usage_percpu_user")?.unwrap_or_default();
    if let Some(stat) = read_keyed(dir, "cpuacct.stat")? {
        let ns = |k: &str| stat.get(k).copied().unwrap_or(0).saturating_mul(NANOS_PER_SECOND) / ticks;
        u.user = ns("user");
        u.kernel = ns("system");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn usage_in_nanoseconds() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("cpuacct.usage"), "123456789\n").unwrap();
        fs::write(d.join("cpuacct.usage_percpu"), "100000000 23456789 \n").unwrap();
        fs::write(d.join("cpuacct.stat"), "user 7\nsystem 3\n").unwrap();
        let mut u = CpuUsage::default();
        stats_with_ticks(d, &mut u, 100).unwrap();
        assert_eq!(u.total, 123_456_789);
        assert_eq!(u.percpu, [100_000_000, 23_456_789]);
        assert!(u.percpu_kernel.is_empty(), "older kernel: no per-CPU split");
        assert_eq!((u.user, u.kernel), (70_000_000, 30_000_000));
        fs::write(d.join("cpuacct.usage_percpu_sys"), "1 2\n").unwrap();
        fs::write(d.join("cpuacct.usage_percpu_user"), "3 4\n").unwrap();
        stats_with_ticks(d, &mut u, 100).unwrap();
        assert_eq!((u.percpu_kernel.as_slice(), u.percpu_user.as_slice()), (&[1, 2][..], &[3, 4][..]));
        assert_eq!(clock_ticks(), 100);
    }
}
