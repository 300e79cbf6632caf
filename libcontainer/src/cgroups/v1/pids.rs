//! v1 `pids`: `pids.max`; statistics from `pids.current` and `pids.max`.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::cgroups::stats::{read_u64, Pids};
use crate::cgroups::{files, Result};

/// `pids.max`: the limit, or `max` for zero and below (no limit).
pub fn apply(dir: &Path, p: &LinuxPids) -> Result<()> {
    files::write(dir, "pids.max", &pids_max(p.limit())).map_err(|e| e.in_field("linux.resources.pids.limit"))
}

/// The value of `pids.max` (the same in v1 and v2).
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    }
}

/// `pids.current` and `pids.max` (the same in v1 and v2); no limit is 0,
/// as runc reports it.
pub(crate) fn stats(dir: &Path, p: &mut Pids) -> Result<()> {
    p.current = read_u64(dir, "pids.current")?;
    p.limit = match read_u64(dir, "pids.max")? {
        u64::MAX => 0,
        n => n,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_or_max() {
        assert_eq!(pids_max(100), "100");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("pids.max"), "max\n").unwrap();
        apply(t.path(), &serde_json::from_str(r#"{"limit":42}"#).unwrap()).unwrap();
        assert_eq!(files::read(t.path(), "pids.max").unwrap(), "42");
        std::fs::write(t.path().join("pids.current"), "3\n").unwrap();
        let mut p = Pids::default();
        stats(t.path(), &mut p).unwrap();
        assert_eq!((p.current, p.limit), (3, 42));
        std::fs::write(t.path().join("pids.max"), "max\n").unwrap();
        stats(t.path(), &mut p).unwrap();
        assert_eq!(p.limit, 0);
    }
}
