//! `linux.resources.blockIO`, the parts v1 (`v1/blkio.rs`) and v2
//! (`v2/io.rs`) share: the checks made before any file is written, the
//! weight conversion, and the errors that name the field and the device.
//!
//! As in runc, a weight of 0 is unset, and every list entry is written as
//! given. Weights are checked against OCI's and runc's 10–1000 (the range
//! the v1→v2 conversion is defined on); a device must be an existing whole
//! disk, which the kernel requires anyway (it answers `ENODEV` or `EINVAL`
//! for anything else, without saying which entry).

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice, LinuxWeightDevice};

use super::{files, Error, Result};

pub(crate) const WEIGHT: &str = "linux.resources.blockIO.weight";
pub(crate) const LEAF_WEIGHT: &str = "linux.resources.blockIO.leafWeight";
pub(crate) const WEIGHT_DEVICE: &str = "linux.resources.blockIO.weightDevice";

/// Where the kernel lists block devices by `major:minor`.
pub(crate) const SYS_DEV_BLOCK: &str = "/sys/dev/block";

/// The four throttling lists: their field, v1 file and v2 `io.max` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttle {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl Throttle {
    pub(crate) const ALL: [Throttle; 4] = [Throttle::ReadBps, Throttle::WriteBps, Throttle::ReadIops, Throttle::WriteIops];

    pub(crate) fn field(self) -> &'static str {
        match self {
            Throttle::ReadBps => "linux.resources.blockIO.throttleReadBpsDevice",
            Throttle::WriteBps => "linux.resources.blockIO.throttleWriteBpsDevice",
            Throttle::ReadIops => "linux.resources.blockIO.throttleReadIOPSDevice",
            Throttle::WriteIops => "linux.resources.blockIO.throttleWriteIOPSDevice",
        }
    }

    pub(crate) fn v1_file(self) -> &'static str {
        match self {
            Throttle::ReadBps => "blkio.throttle.read_bps_device",
            Throttle::WriteBps => "blkio.throttle.write_bps_device",
            Throttle::ReadIops => "blkio.throttle.read_iops_device",
            Throttle::WriteIops => "blkio.throttle.write_iops_device",
        }
    }

    pub(crate) fn v2_key(self) -> &'static str {
        match self {
            Throttle::ReadBps => "rbps",
            Throttle::WriteBps => "wbps",
            Throttle::ReadIops => "riops",
            Throttle::WriteIops => "wiops",
        }
    }

    pub(crate) fn list(self, b: &LinuxBlockIo) -> &[LinuxThrottleDevice] {
        let l = match self {
            Throttle::ReadBps => b.throttle_read_bps_device(),
            Throttle::WriteBps => b.throttle_write_bps_device(),
            Throttle::ReadIops => b.throttle_read_iops_device(),
            Throttle::WriteIops => b.throttle_write_iops_device(),
        };
        l.as_deref().unwrap_or_default()
    }
}

/// A weight that asks for something: `None` and 0 are unset.
pub(crate) fn set(w: Option<u16>) -> Option<u16> {
    w.filter(|&w| w != 0)
}

pub(crate) fn weight_devices(b: &LinuxBlockIo) -> &[LinuxWeightDevice] {
    b.weight_device().as_deref().unwrap_or_default()
}

/// The first field of `b` that asks for something, if any.
pub(crate) fn first_field(b: &LinuxBlockIo) -> Option<&'static str> {
    if set(b.weight()).is_some() {
        return Some(WEIGHT);
    }
    if set(b.leaf_weight()).is_some() {
        return Some(LEAF_WEIGHT);
    }
    if weight_devices(b).iter().any(|d| set(d.weight()).is_some() || set(d.leaf_weight()).is_some()) {
        return Some(WEIGHT_DEVICE);
    }
    Throttle::ALL.into_iter().find(|t| !t.list(b).is_empty()).map(Throttle::field)
}

/// runc's `ConvertBlkIOToIOWeightValue`: v1's 10–1000 onto v2's 1–10000
/// (10 → 1, 100 → 910, 500 → 4950, 1000 → 10000). Only defined on 10–1000,
/// which [`validate`] ensures.
pub(crate) fn v2_weight(w: u16) -> u64 {
    1 + (u64::from(w) - 10) * 9999 / 990
}

/// `major:minor`, as the kernel files take it.
pub(crate) fn dev(major: i64, minor: i64) -> String {
    format!("{major}:{minor}")
}

fn check_weight(field: &'static str, at: &str, w: Option<u16>) -> Result<()> {
    match set(w) {
        Some(w) if !(10..=1000).contains(&w) => {
            Err(Error::Invalid { field, reason: format!("{at}{w} is outside 10-1000 (0 leaves the weight unset)") })
        }
        _ => Ok(()),
    }
}

fn check_numbers(field: &'static str, i: usize, major: i64, minor: i64) -> Result<()> {
    // The kernel's dev_t has a 12-bit major and a 20-bit minor.
    if !(0..1 << 12).contains(&major) || !(0..1 << 20).contains(&minor) {
        return Err(Error::Invalid { field, reason: format!("[{i}] {major}:{minor} is not a device number") });
    }
    Ok(())
}

/// The checks that need nothing but the config: weight ranges and device
/// numbers.
pub(crate) fn validate(b: &LinuxBlockIo) -> Result<()> {
    check_weight(WEIGHT, "", b.weight())?;
    check_weight(LEAF_WEIGHT, "", b.leaf_weight())?;
    for (i, d) in weight_devices(b).iter().enumerate() {
        check_numbers(WEIGHT_DEVICE, i, d.major(), d.minor())?;
        let at = format!("[{i}] {}: weight ", dev(d.major(), d.minor()));
        check_weight(WEIGHT_DEVICE, &at, d.weight())?;
        let at = format!("[{i}] {}: leafWeight ", dev(d.major(), d.minor()));
        check_weight(WEIGHT_DEVICE, &at, d.leaf_weight())?;
    }
    for t in Throttle::ALL {
        for (i, d) in t.list(b).iter().enumerate() {
            check_numbers(t.field(), i, d.major(), d.minor())?;
        }
    }
    Ok(())
}

/// Every device `b` names must be a block device the kernel knows, and a
/// whole disk (the kernel refuses partitions). `sys_dev_block` is
/// [`SYS_DEV_BLOCK`] except in tests; without it (no sysfs) nothing is
/// checked and the kernel has the last word.
pub(crate) fn check_devices(sys_dev_block: &Path, b: &LinuxBlockIo) -> Result<()> {
    if !sys_dev_block.is_dir() {
        return Ok(());
    }
    let weights = weight_devices(b).iter().map(|d| (WEIGHT_DEVICE, d.major(), d.minor()));
    let throttles = Throttle::ALL.into_iter().flat_map(|t| t.list(b).iter().map(move |d| (t.field(), d.major(), d.minor())));
    let mut index: Vec<(&'static str, usize)> = Vec::new();
    for (field, major, minor) in weights.chain(throttles) {
        let i = match index.iter_mut().find(|(f, _)| *f == field) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                index.push((field, 0));
                0
            }
        };
        let d = dev(major, minor);
        let node = sys_dev_block.join(&d);
        if !node.exists() {
            return Err(Error::Invalid {
                field,
                reason: format!("[{i}] {d}: no such block device ({} does not exist)", node.display()),
            });
        }
        if node.join("partition").exists() {
            let disk = files::read(&node.join(".."), "dev").unwrap_or_else(|_| "its disk".into());
            return Err(Error::Invalid {
                field,
                reason: format!("[{i}] {d} is a partition; block IO limits and weights apply to whole disks (here {disk})"),
            });
        }
    }
    Ok(())
}

/// A refused write of one entry, naming the field, the entry and, for the
/// errors that have one, the reason: `EOPNOTSUPP` for a weight on a device
/// whose I/O scheduler does not do weights, `ENODEV`/`EINVAL` for a device
/// the kernel does not know (one that vanished after [`check_devices`]).
pub(crate) fn entry_error(sys_dev_block: &Path, field: &'static str, i: usize, d: &str, e: Error) -> Error {
    let why = if files::is_write_errno(&e, libc::EOPNOTSUPP) {
        let sched = files::read(&sys_dev_block.join(d).join("queue"), "scheduler").unwrap_or_default();
        format!("the device's I/O scheduler does not do per-cgroup weights (it needs BFQ; scheduler: {sched:?}): ")
    } else if files::is_write_errno(&e, libc::ENODEV) {
        "no such block device: ".to_owned()
    } else {
        String::new()
    };
    Error::Invalid { field, reason: format!("[{i}] {d}: {why}{e}") }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    pub(crate) fn blkio(json: &str) -> LinuxBlockIo {
        serde_json::from_str(json).unwrap()
    }

    /// A fake `/sys` with a disk 8:0 and its partition 8:1, and 7:0.
    pub(crate) fn fake_sys(root: &Path) -> std::path::PathBuf {
        for (dir, dev) in [("block/sda", "8:0"), ("block/sda/sda1", "8:1"), ("block/loop0", "7:0")] {
            fs::create_dir_all(root.join(dir)).unwrap();
            fs::write(root.join(dir).join("dev"), format!("{dev}\n")).unwrap();
            let link = root.join("dev/block").join(dev);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            symlink(root.join(dir), link).unwrap();
        }
        fs::write(root.join("block/sda/sda1/partition"), "1\n").unwrap();
        fs::create_dir_all(root.join("block/sda/queue")).unwrap();
        fs::write(root.join("block/sda/queue/scheduler"), "[mq-deadline] kyber bfq none\n").unwrap();
        root.join("dev/block")
    }

    #[test]
    fn runcs_weight_conversion() {
        assert_eq!(v2_weight(10), 1);
        assert_eq!(v2_weight(100), 910);
        assert_eq!(v2_weight(500), 4950);
        assert_eq!(v2_weight(1000), 10000);
    }

    #[test]
    fn weights_outside_10_to_1000_are_refused_zero_is_unset() {
        validate(&blkio(r#"{"weight":0,"leafWeight":1000,"weightDevice":[{"major":8,"minor":0,"weight":10}]}"#)).unwrap();
        for (json, field, what) in [
            (r#"{"weight":9}"#, WEIGHT, "9 is outside 10-1000"),
            (r#"{"weight":1001}"#, WEIGHT, "1001 is outside"),
            (r#"{"leafWeight":5}"#, LEAF_WEIGHT, "5 is outside"),
            (
                r#"{"weightDevice":[{"major":8,"minor":0,"weight":500},{"major":8,"minor":16,"leafWeight":2000}]}"#,
                WEIGHT_DEVICE,
                "[1] 8:16: leafWeight 2000",
            ),
            (r#"{"weightDevice":[{"major":-8,"minor":0,"weight":500}]}"#, WEIGHT_DEVICE, "[0] -8:0 is not a device number"),
            (r#"{"throttleWriteIOPSDevice":[{"major":8,"minor":1048576,"rate":1}]}"#, Throttle::WriteIops.field(), "8:1048576"),
        ] {
            match validate(&blkio(json)) {
                Err(Error::Invalid { field: f, reason }) => {
                    assert_eq!(f, field, "{json}");
                    assert!(reason.contains(what), "{json}: {reason}");
                }
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn first_field_names_what_asks() {
        assert_eq!(first_field(&blkio(r#"{"weight":0,"weightDevice":[]}"#)), None);
        assert_eq!(first_field(&blkio(r#"{"weight":0,"leafWeight":10}"#)), Some(LEAF_WEIGHT));
        assert_eq!(first_field(&blkio(r#"{"weightDevice":[{"major":8,"minor":0}]}"#)), None);
        assert_eq!(
            first_field(&blkio(r#"{"throttleReadIOPSDevice":[{"major":8,"minor":0,"rate":0}]}"#)),
            Some("linux.resources.blockIO.throttleReadIOPSDevice")
        );
    }

    #[test]
    fn devices_must_exist_and_be_whole_disks() {
        let t = tempfile::tempdir().unwrap();
        let sys = fake_sys(t.path());
        check_devices(&sys, &blkio(r#"{"weightDevice":[{"major":8,"minor":0,"weight":100}],"throttleReadBpsDevice":[{"major":7,"minor":0,"rate":1}]}"#))
            .unwrap();
        let e = check_devices(
            &sys,
            &blkio(r#"{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1}],"throttleWriteBpsDevice":[{"major":7,"minor":0,"rate":1},{"major":9,"minor":9,"rate":1}]}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("invalid linux.resources.blockIO.throttleWriteBpsDevice: [1] 9:9: no such block device"), "{e}");
        let e = check_devices(&sys, &blkio(r#"{"weightDevice":[{"major":8,"minor":1,"weight":100}]}"#)).unwrap_err().to_string();
        assert!(
            e.contains("weightDevice: [0] 8:1 is a partition; block IO limits and weights apply to whole disks (here 8:0)"),
            "{e}"
        );
        // No sysfs: the kernel decides.
        check_devices(&t.path().join("nope"), &blkio(r#"{"weightDevice":[{"major":9,"minor":9,"weight":100}]}"#)).unwrap();
    }

    #[test]
    fn entry_errors_say_why() {
        let t = tempfile::tempdir().unwrap();
        let sys = fake_sys(t.path());
        let raw = |errno| Error::Write {
            path: "/c/blkio.bfq.weight_device".into(),
            value: "8:0 300".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let e = entry_error(&sys, WEIGHT_DEVICE, 2, "8:0", raw(libc::EOPNOTSUPP)).to_string();
        assert!(e.starts_with("invalid linux.resources.blockIO.weightDevice: [2] 8:0: the device's I/O scheduler"), "{e}");
        assert!(e.contains("needs BFQ; scheduler: \"[mq-deadline] kyber bfq none\""), "{e}");
        let e = entry_error(&sys, WEIGHT_DEVICE, 0, "8:0", raw(libc::ENODEV)).to_string();
        assert!(e.contains("no such block device: write \"8:0 300\""), "{e}");
    }
}
