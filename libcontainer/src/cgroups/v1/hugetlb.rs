//! v1 `hugetlb`: `hugetlb.<size>.limit_in_bytes`, and the reservation limit
//! `hugetlb.<size>.rsvd.limit_in_bytes` where the kernel has it (5.7+).

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::cgroups::controllers::check_page_size;
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
        files::write(dir, &file, &value)?;
        let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
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
    }
}
