//! v1 `rdma` (and v2's, the same file): `rdma.max`, one line per device,
//! `DEVICE hca_handle=N hca_object=M` with only the limits given (a limit
//! not given keeps its value), as runc writes it.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::LinuxRdma;

use crate::cgroups::{files, Error, Result};

pub(crate) const FIELD: &str = "linux.resources.rdma";
const MAX: &str = "rdma.max";

pub fn apply(dir: &Path, limits: &HashMap<String, LinuxRdma>) -> Result<()> {
    for (device, line) in lines(limits) {
        files::write(dir, MAX, &line).map_err(|e| {
            let why = if files::is_write_errno(&e, libc::ENODEV) {
                // rdma.max lists the devices the kernel knows.
                let known: Vec<String> = files::read(dir, MAX)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                    .collect();
                format!(
                    "no such RDMA device (devices here: {}): ",
                    if known.is_empty() { "none".into() } else { known.join(" ") }
                )
            } else {
                String::new()
            };
            Error::Invalid { field: FIELD, reason: format!("{device:?}: {why}{e}") }
        })?;
    }
    Ok(())
}

/// `(device, line)` sorted by device; devices with no limit are left out
/// (`validate` refuses them).
pub(crate) fn lines(limits: &HashMap<String, LinuxRdma>) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = limits
        .iter()
        .filter(|(_, l)| l.hca_handles().is_some() || l.hca_objects().is_some())
        .map(|(dev, l)| {
            let mut line = dev.clone();
            if let Some(n) = l.hca_handles() {
                line += &format!(" hca_handle={n}");
            }
            if let Some(n) = l.hca_objects() {
                line += &format!(" hca_object={n}");
            }
            (dev.as_str(), line)
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: &str) -> HashMap<String, LinuxRdma> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn one_line_per_device_with_the_limits_given() {
        let l = limits(r#"{"mlx5_1":{"hcaHandles":3,"hcaObjects":10000},"mlx4_0":{"hcaObjects":1000},"rxe3":{}}"#);
        let got: Vec<String> = lines(&l).into_iter().map(|(_, l)| l).collect();
        assert_eq!(got, ["mlx4_0 hca_object=1000", "mlx5_1 hca_handle=3 hca_object=10000"]);
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(MAX), "").unwrap();
        apply(t.path(), &limits(r#"{"rxe0":{"hcaHandles":2}}"#)).unwrap();
        assert_eq!(files::read(t.path(), MAX).unwrap(), "rxe0 hca_handle=2");
        let e = apply(&t.path().join("gone"), &limits(r#"{"rxe0":{"hcaHandles":2}}"#)).unwrap_err().to_string();
        assert!(e.starts_with("invalid linux.resources.rdma: \"rxe0\": write \"rxe0 hca_handle=2\""), "{e}");
    }
}
