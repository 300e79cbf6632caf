//! v1 `blkio`: `linux.resources.blockIO` as runc writes it, and statistics.
//!
//! Weights go to CFQ's `blkio.weight`/`blkio.weight_device` where the
//! kernel has them (before 5.0), else to BFQ's `blkio.bfq.weight` and
//! `blkio.bfq.weight_device` (per-device since 5.4); `leafWeight` only
//! exists with CFQ (`blkio.leaf_weight`, `blkio.leaf_weight_device`).
//! Throttles go to `blkio.throttle.{read,write}_{bps,iops}_device`, one
//! `MAJ:MIN RATE` line per entry (a rate of 0 lifts that device's limit).
//!
//! Statistics: bytes and operations per device and direction, from the
//! first of these that has any device line, as runc looks for them: the CFQ
//! scheduler's `blkio.io_service_bytes_recursive` and
//! `blkio.io_serviced_recursive` (kernels before 5.0), BFQ's
//! `blkio.bfq.io_*_recursive`, then the throttling layer's
//! `blkio.throttle.io_*_recursive`, which every kernel with blkio counts.

use std::path::Path;

use oci_spec::runtime::LinuxBlockIo;

use crate::cgroups::blockio::{self, dev, entry_error, set, Throttle, LEAF_WEIGHT, WEIGHT, WEIGHT_DEVICE};
use crate::cgroups::stats::{parse_dev, parse_u64, Blkio, BlkioEntry};
use crate::cgroups::{files, Error, Result};

/// Write `b` (checked by `blockio::validate` and `check_devices`) into the
/// container's blkio directory. `sys_dev_block` only feeds error messages.
pub fn apply(dir: &Path, b: &LinuxBlockIo, sys_dev_block: &Path) -> Result<()> {
    let (weight_file, device_file) = if files::exists(dir, "blkio.weight") {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    let missing = |field: &'static str, file: &str, why: &str| Error::Invalid {
        field,
        reason: format!("{} does not exist: {why}", dir.join(file).display()),
    };
    if let Some(w) = set(b.weight()) {
        if !files::exists(dir, weight_file) {
            return Err(missing(WEIGHT, "blkio.bfq.weight", "no proportional-weight I/O scheduler (CFQ's blkio.weight nor BFQ)"));
        }
        files::write(dir, weight_file, &w.to_string()).map_err(|e| field_error(WEIGHT, e))?;
    }
    let cfq_only = "leaf weights need the CFQ scheduler, which Linux 5.0 removed";
    if let Some(w) = set(b.leaf_weight()) {
        if !files::exists(dir, "blkio.leaf_weight") {
            return Err(missing(LEAF_WEIGHT, "blkio.leaf_weight", cfq_only));
        }
        files::write(dir, "blkio.leaf_weight", &w.to_string()).map_err(|e| field_error(LEAF_WEIGHT, e))?;
    }
    for (i, d) in blockio::weight_devices(b).iter().enumerate() {
        let (weight, leaf) = (set(d.weight()), set(d.leaf_weight()));
        if weight.is_none() && leaf.is_none() {
            continue;
        }
        let name = dev(d.major(), d.minor());
        let err = |e| entry_error(sys_dev_block, WEIGHT_DEVICE, i, &name, e);
        if let Some(w) = weight {
            if !files::exists(dir, device_file) {
                return Err(missing(WEIGHT_DEVICE, device_file, "no per-device weights (CFQ, or BFQ since Linux 5.4)"));
            }
            files::write(dir, device_file, &format!("{name} {w}")).map_err(err)?;
        }
        if let Some(w) = leaf {
            if !files::exists(dir, "blkio.leaf_weight_device") {
                return Err(missing(WEIGHT_DEVICE, "blkio.leaf_weight_device", cfq_only));
            }
            files::write(dir, "blkio.leaf_weight_device", &format!("{name} {w}")).map_err(err)?;
        }
    }
    for t in Throttle::ALL {
        for (i, d) in t.list(b).iter().enumerate() {
            let name = dev(d.major(), d.minor());
            files::write(dir, t.v1_file(), &format!("{name} {}", d.rate()))
                .map_err(|e| entry_error(sys_dev_block, t.field(), i, &name, e))?;
        }
    }
    Ok(())
}

fn field_error(field: &'static str, e: Error) -> Error {
    Error::Field { field: field.to_owned(), source: Box::new(e) }
}

const SOURCES: [&str; 3] = ["blkio.", "blkio.bfq.", "blkio.throttle."];

/// `8:0 Read 4096` lines; the closing `Total 4096` has no device and is
/// left out.
fn entries(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>> {
    let Some(text) = files::read_opt(dir, file)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [dev, op, value] => {
                let (major, minor) = parse_dev(dir, file, i + 1, dev)?;
                out.push(BlkioEntry { major, minor, op: (*op).to_owned(), value: parse_u64(dir, file, i + 1, value)? });
            }
            // `Total 4608`, or an empty line.
            [_, _] | [] => {}
            _ => {
                return Err(crate::cgroups::Error::Parse {
                    path: dir.join(file),
                    line: i + 1,
                    reason: format!("not a `major:minor op value` line: {line:?}"),
                })
            }
        }
    }
    Ok(out)
}

pub fn stats(dir: &Path, b: &mut Blkio) -> Result<()> {
    for prefix in SOURCES {
        let bytes = entries(dir, &format!("{prefix}io_service_bytes_recursive"))?;
        let ios = entries(dir, &format!("{prefix}io_serviced_recursive"))?;
        if !bytes.is_empty() || !ios.is_empty() {
            b.io_service_bytes_recursive = bytes;
            b.io_serviced_recursive = ios;
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::cgroups::blockio::tests::{blkio, fake_sys};

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            fs::write(dir.join(n), "").unwrap();
        }
    }

    const THROTTLES: [&str; 4] = [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    ];

    #[test]
    fn bfq_weights_and_throttles() {
        let t = tempfile::tempdir().unwrap();
        let sys = fake_sys(&t.path().join("sys"));
        let d = t.path();
        touch(d, &["blkio.bfq.weight", "blkio.bfq.weight_device"]);
        touch(d, &THROTTLES);
        let b = blkio(
            r#"{"weight":300,"weightDevice":[{"major":8,"minor":0,"weight":500},{"major":7,"minor":0}],
                "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}],"throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":2097152}],
                "throttleReadIOPSDevice":[{"major":8,"minor":0,"rate":100}],"throttleWriteIOPSDevice":[{"major":7,"minor":0,"rate":0}]}"#,
        );
        apply(d, &b, &sys).unwrap();
        let read = |f| files::read(d, f).unwrap();
        assert_eq!(read("blkio.bfq.weight"), "300");
        assert_eq!(read("blkio.bfq.weight_device"), "8:0 500", "the entry without a weight writes nothing");
        assert_eq!(read(THROTTLES[0]), "8:0 1048576");
        assert_eq!(read(THROTTLES[1]), "8:0 2097152");
        assert_eq!(read(THROTTLES[2]), "8:0 100");
        assert_eq!(read(THROTTLES[3]), "7:0 0", "0 lifts the limit in v1");
        // CFQ has no leaf weights here (BFQ never had them).
        let e = apply(d, &blkio(r#"{"leafWeight":100}"#), &sys).unwrap_err().to_string();
        assert!(e.starts_with("invalid linux.resources.blockIO.leafWeight: "), "{e}");
        assert!(e.contains("blkio.leaf_weight does not exist: leaf weights need the CFQ scheduler"), "{e}");
    }

    #[test]
    fn cfq_files_win_when_present() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        touch(d, &["blkio.weight", "blkio.weight_device", "blkio.leaf_weight", "blkio.leaf_weight_device", "blkio.bfq.weight"]);
        let b = blkio(r#"{"weight":10,"leafWeight":20,"weightDevice":[{"major":8,"minor":16,"weight":30,"leafWeight":40}]}"#);
        apply(d, &b, Path::new("/nonexistent")).unwrap();
        let read = |f| files::read(d, f).unwrap();
        assert_eq!(read("blkio.weight"), "10");
        assert_eq!(read("blkio.leaf_weight"), "20");
        assert_eq!(read("blkio.weight_device"), "8:16 30");
        assert_eq!(read("blkio.leaf_weight_device"), "8:16 40");
        assert_eq!(read("blkio.bfq.weight"), "", "untouched");
    }

    #[test]
    fn no_weight_files_name_the_field() {
        let t = tempfile::tempdir().unwrap();
        let e = apply(t.path(), &blkio(r#"{"weight":100}"#), Path::new("/x")).unwrap_err().to_string();
        assert!(e.starts_with("invalid linux.resources.blockIO.weight: "), "{e}");
        assert!(e.contains("no proportional-weight I/O scheduler"), "{e}");
        // Throttles need no scheduler, only their files.
        touch(t.path(), &THROTTLES);
        apply(t.path(), &blkio(r#"{"weight":0,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1}]}"#), Path::new("/x"))
            .unwrap();
    }

    #[test]
    fn the_first_source_with_devices_wins() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("blkio.bfq.io_service_bytes_recursive"), "Total 0\n").unwrap();
        fs::write(
            d.join("blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n",
        )
        .unwrap();
        fs::write(d.join("blkio.throttle.io_serviced_recursive"), "8:0 Read 1\n8:0 Write 1\nTotal 2\n").unwrap();
        let mut b = Blkio::default();
        stats(d, &mut b).unwrap();
        assert_eq!(b.io_service_bytes_recursive.len(), 3);
        assert_eq!(b.io_service_bytes_recursive[0], BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 4096 });
        assert_eq!(b.io_serviced_recursive[1].op, "Write");
        fs::write(d.join("blkio.io_serviced_recursive"), "8:0 Read x\n").unwrap();
        let e = stats(d, &mut b).unwrap_err().to_string();
        assert!(e.contains("blkio.io_serviced_recursive line 1"), "{e}");
    }
}
