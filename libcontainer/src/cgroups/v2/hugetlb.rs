//! v2 `hugetlb`: `hugetlb.<size>.max`, and the reservation limit
//! `hugetlb.<size>.rsvd.max` where the kernel has it (5.7+); statistics from
//! `hugetlb.<size>.current` and the `max` count of `hugetlb.<size>.events`
//! (v2 keeps no peak).

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::cgroups::controllers::check_page_size;
use crate::cgroups::stats::{hugetlb_sizes, read_keyed, read_u64, Hugetlb};
use crate::cgroups::{files, Error, Result};

pub fn apply(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let size = l.page_size();
        check_page_size(size)?;
        let file = format!("hugetlb.{size}.max");
        if !files::exists(dir, &file) {
            return Err(Error::Invalid {
                field: "linux.resources.hugepageLimits",
                reason: format!("page size {size} is not available here ({} is missing)", dir.join(&file).display()),
            });
        }
        // A limit of 0 is a real one (no huge pages); below 0 lifts it.
        let value = if l.limit() < 0 { "max".to_owned() } else { l.limit().to_string() };
        files::write(dir, &file, &value).map_err(|e| e.in_field("linux.resources.hugepageLimits"))?;
        let rsvd = format!("hugetlb.{size}.rsvd.max");
        if files::exists(dir, &rsvd) {
            files::write(dir, &rsvd, &value).map_err(|e| e.in_field("linux.resources.hugepageLimits"))?;
        }
    }
    Ok(())
}

pub fn stats(dir: &Path, out: &mut std::collections::BTreeMap<String, Hugetlb>) -> Result<()> {
    for size in hugetlb_sizes(dir, "max")? {
        let events = read_keyed(dir, &format!("hugetlb.{size}.events"))?.unwrap_or_default();
        let h = Hugetlb {
            usage: read_u64(dir, &format!("hugetlb.{size}.current"))?,
            max: 0,
            failcnt: events.get("max").copied().unwrap_or(0),
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
        for f in ["hugetlb.2MB.max", "hugetlb.2MB.rsvd.max", "hugetlb.1GB.max"] {
            fs::write(t.path().join(f), "max\n").unwrap();
        }
        let l: Vec<LinuxHugepageLimit> =
            serde_json::from_str(r#"[{"pageSize":"2MB","limit":4194304},{"pageSize":"1GB","limit":-1}]"#).unwrap();
        apply(t.path(), &l).unwrap();
        assert_eq!(files::read(t.path(), "hugetlb.2MB.max").unwrap(), "4194304");
        assert_eq!(files::read(t.path(), "hugetlb.2MB.rsvd.max").unwrap(), "4194304");
        assert_eq!(files::read(t.path(), "hugetlb.1GB.max").unwrap(), "max");
        let l: Vec<LinuxHugepageLimit> = serde_json::from_str(r#"[{"pageSize":"../2MB","limit":1}]"#).unwrap();
        assert!(apply(t.path(), &l).is_err());
        fs::write(t.path().join("hugetlb.2MB.current"), "2097152\n").unwrap();
        fs::write(t.path().join("hugetlb.2MB.events"), "max 5\n").unwrap();
        fs::write(t.path().join("hugetlb.1GB.current"), "0\n").unwrap();
        let mut out = Default::default();
        stats(t.path(), &mut out).unwrap();
        assert_eq!(out["2MB"], Hugetlb { usage: 2097152, max: 0, failcnt: 5 });
        assert_eq!(out["1GB"], Hugetlb::default(), "no events file: no failures counted");
    }
}
