//! v1 `net_prio`: `net_prio.ifpriomap`, one `IFNAME PRIORITY` line per
//! entry of `linux.resources.network.priorities`, as runc writes it. The
//! kernel looks the interface up in its initial network namespace (the
//! runtime's, as OCI says), and refuses an unknown one (`ENODEV`). cgroup
//! v2 has no such controller.

use std::path::Path;

use oci_spec::runtime::LinuxInterfacePriority;

use crate::cgroups::{files, Error, Result};

pub(crate) const FIELD: &str = "linux.resources.network.priorities";

pub fn apply(dir: &Path, priorities: &[LinuxInterfacePriority]) -> Result<()> {
    for (i, p) in priorities.iter().enumerate() {
        files::write(dir, "net_prio.ifpriomap", &format!("{} {}", p.name(), p.priority())).map_err(|e| {
            let why = if files::is_write_errno(&e, libc::ENODEV) { "no such network interface on the host: " } else { "" };
            Error::Invalid { field: FIELD, reason: format!("[{i}] {:?}: {why}{e}", p.name()) }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interface() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("net_prio.ifpriomap"), "").unwrap();
        let p: Vec<LinuxInterfacePriority> =
            serde_json::from_str(r#"[{"name":"eth0","priority":500},{"name":"lo","priority":7}]"#).unwrap();
        apply(t.path(), &p).unwrap();
        assert_eq!(files::read(t.path(), "net_prio.ifpriomap").unwrap(), "lo 7", "the last write; the kernel keeps each");
        let e = apply(&t.path().join("gone"), &p).unwrap_err().to_string();
        assert!(e.starts_with("invalid linux.resources.network.priorities: [0] \"eth0\": write \"eth0 500\""), "{e}");
    }
}
