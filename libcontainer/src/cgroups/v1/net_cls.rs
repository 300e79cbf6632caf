//! v1 `net_cls`: `net_cls.classid` from `linux.resources.network.classID`
//! (0 leaves it unset, as in runc). cgroup v2 has no such controller.

use std::path::Path;

use crate::cgroups::{files, Error, Result};

pub(crate) const FIELD: &str = "linux.resources.network.classID";

pub fn apply(dir: &Path, class_id: u32) -> Result<()> {
    files::write(dir, "net_cls.classid", &class_id.to_string())
        .map_err(|e| Error::Field { field: FIELD.to_owned(), source: Box::new(e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classid_in_decimal() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("net_cls.classid"), "0\n").unwrap();
        apply(t.path(), 0x10001).unwrap();
        assert_eq!(files::read(t.path(), "net_cls.classid").unwrap(), "65537");
    }
}
