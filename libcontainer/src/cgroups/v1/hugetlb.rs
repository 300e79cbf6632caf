//! v1 `hugetlb`: `hugetlb.<size>.limit_in_bytes`, and the reservation limit
//! `hugetlb.<size>.rsvd.limit_in_bytes` where the kernel has it (5.7+);
//! statistics from `usage_in_bytes`, `max_usage_in_bytes`, `failcnt`.

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::cgroups::controllers::check_page_size;
use crate::cgroups::stats::{hugetlb_sizes, read_u64, Hugetlb};
use crate::cgroups::{files, Error, Result};

pub fn apply(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let size = l.page_size();
        check_page_size(size)?;
        let file = format!("hugetlb.{size}.limit_in_bytes");
        if !files::exists(dir, &file) {
            return Err(Error::Invalid {
                field: "linux.resources.hugepageLimits",
                reason: format!("page size {size} is not available here ({} is missing)", dir.join(&file).display()),
            });
        }
        let value = if l.limit() < 0 { "-1".to_owned() } else { l.limit().to_string() };
        files::write(dir, &file, &value).map_err(|e| e.in_field("linux.resources.hugepageLimits"))?;
        let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
        if files::exists(dir, &rsvd) {
            files::write(dir, &rsvd, &value).map_err(|e| e.in_field("linux.resources.hugepageLimits"))?;
        }
    }
    Ok(())
}

/// Every page size the directory has: usage, peak, and failed allocations.
pub fn stats(dir: &Path, out: &mut std::collections::BTreeMap<String, Hugetlb>) -> Result<()> {
    for size in hugetlb_sizes(dir, "limit_in_bytes")? {
        let file = |what: &str| format!("hugetlb.{size}.{what}");
        let h = Hugetlb {
            usage: read_u64(dir, &file("usage_in_bytes"))?,
            max: read_u64(dir, &file("max_usage_in_bytes"))?,
            failcnt: read_u64(dir, &file("failcnt"))?,
        };
        out.insert(size, h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn limits_and_reservations() {
        let t = tempfile::tempdir().unwrap();
        for f in ["hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.rsvd.limit_in_bytes", "hugetlb.1GB.limit_in_bytes"] {
            fs::write(t.path().join(f), "9223372036854771712\n").unwrap();
        }
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize":"2MB","limit":4194304},{"pageSize":"1GB","limit":0}]"#).unwrap();
        apply(t.path(), &l).unwrap();
        assert_eq!(files::read(t.path(), "hugetlb.2MB.limit_in_bytes").unwrap(), "4194304");
        assert_eq!(files::read(t.path(), "hugetlb.2MB.rsvd.limit_in_bytes").unwrap(), "4194304");
        assert_eq!(files::read(t.path(), "hugetlb.1GB.limit_in_bytes").unwrap(), "0");
        let l: Vec<LinuxHugepageLimit> = serde_json::from_str(r#"[{"pageSize":"16MB","limit":1}]"#).unwrap();
        let e = apply(t.path(), &l).unwrap_err();
        assert!(e.to_string().contains("page size 16MB is not available"), "{e}");
        for (f, v) in [("usage_in_bytes", "2097152"), ("max_usage_in_bytes", "4194304"), ("failcnt", "1")] {
            fs::write(t.path().join(format!("hugetlb.2MB.{f}")), v).unwrap();
            fs::write(t.path().join(format!("hugetlb.1GB.{f}")), "0").unwrap();
        }
        let mut out = Default::default();
        stats(t.path(), &mut out).unwrap();
        assert_eq!(out["2MB"], Hugetlb { usage: 2097152, max: 4194304, failcnt: 1 });
        assert_eq!(out["1GB"], Hugetlb::default());
        assert_eq!(out.len(), 2);
    }
}
