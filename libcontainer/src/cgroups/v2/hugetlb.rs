//! v2 `hugetlb`: `hugetlb.<size>.max`, and the reservation limit
//! `hugetlb.<size>.rsvd.max` where the kernel has it (5.7+).

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::cgroups::controllers::check_page_size;
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
        files::write(dir, &file, &value)?;
        let rsvd = format!("hugetlb.{size}.rsvd.max");
        if files::exists(dir, &rsvd) {
            files::write(dir, &rsvd, &value)?;
        }
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
    }
}
