//! v2 `io`: `linux.resources.blockIO` converted as runc converts it, and
//! statistics.
//!
//! - `weight`: BFQ's `io.bfq.weight` as it is when the file exists (BFQ
//!   takes 1–1000), else `io.weight` converted from 10–1000 to 1–10000
//!   (`blockio::v2_weight`).
//! - `weightDevice`: `MAJ:MIN WEIGHT` to `io.bfq.weight` when BFQ has
//!   per-device weights (5.4+: the file reads `default N`), as runc; else,
//!   or when that device does not use BFQ, `io.weight` with the converted
//!   weight, which the kernel takes for devices under io.cost. A device
//!   neither takes is an error naming the entry (runc skips such entries
//!   silently).
//! - `leafWeight` (CFQ only): ignored with a warning, as runc ignores it.
//! - Throttles: one `io.max` line per device, `MAJ:MIN rbps=X wbps=Y ...`
//!   (keys not given keep their value). A rate of 0 becomes `max`: in v1
//!   it lifts the limit, and v2's kernel refuses 0 (`ERANGE`).
//!
//! Statistics: `io.stat`, one line per device (`8:0 rbytes=4096 wbytes=0
//! rios=1 wios=0 dbytes=0 dios=0`), reported as runc does in v1's shape:
//! bytes and operations, each `Read` and `Write`.

use std::path::Path;

use oci_spec::runtime::LinuxBlockIo;

use crate::cgroups::blockio::{self, dev, entry_error, set, Throttle, LEAF_WEIGHT, WEIGHT, WEIGHT_DEVICE};
use crate::cgroups::stats::{parse_dev, parse_u64, Blkio, BlkioEntry};
use crate::cgroups::{files, Error, Result};

const BFQ: &str = "io.bfq.weight";
const WEIGHT_FILE: &str = "io.weight";
const MAX: &str = "io.max";

/// Write `b` (checked by `blockio::validate` and `check_devices`) into the
/// container's cgroup2 directory. `sys_dev_block` only feeds error messages.
pub fn apply(dir: &Path, b: &LinuxBlockIo, sys_dev_block: &Path) -> Result<()> {
    let bfq = files::read_opt(dir, BFQ)?;
    if let Some(w) = set(b.weight()) {
        let write = match bfq {
            Some(_) => files::write(dir, BFQ, &w.to_string()),
            None => files::write(dir, WEIGHT_FILE, &blockio::v2_weight(w).to_string()),
        };
        write.map_err(|e| Error::Field { field: WEIGHT.to_owned(), source: Box::new(e) })?;
    }
    if set(b.leaf_weight()).is_some() || blockio::weight_devices(b).iter().any(|d| set(d.leaf_weight()).is_some()) {
        tracing::warn!(field = LEAF_WEIGHT, "cgroup v2 has no leaf weights (CFQ only); ignored");
    }
    // An old BFQ reads back a bare number and takes no device lines.
    let bfq_per_device = bfq.as_deref().is_some_and(|s| s.trim().parse::<u64>().is_err());
    for (i, d) in blockio::weight_devices(b).iter().enumerate() {
        let Some(w) = set(d.weight()) else { continue };
        let name = dev(d.major(), d.minor());
        let via_bfq = if bfq_per_device { files::write(dir, BFQ, &format!("{name} {w}")) } else { Err(not_supported(dir)) };
        match via_bfq {
            Ok(()) => {}
            Err(e) if files::is_write_errno(&e, libc::EOPNOTSUPP) => {
                files::write(dir, WEIGHT_FILE, &format!("{name} {}", blockio::v2_weight(w)))
                    .map_err(|e| entry_error(sys_dev_block, WEIGHT_DEVICE, i, &name, e))?;
            }
            Err(e) => return Err(entry_error(sys_dev_block, WEIGHT_DEVICE, i, &name, e)),
        }
    }
    for (name, line) in io_max_lines(b) {
        files::write(dir, MAX, &line).map_err(|e| {
            // Name the first entry for this device.
            let (field, i) = Throttle::ALL
                .into_iter()
                .find_map(|t| t.list(b).iter().position(|d| dev(d.major(), d.minor()) == name).map(|i| (t.field(), i)))
                .unwrap_or((Throttle::ReadBps.field(), 0));
            entry_error(sys_dev_block, field, i, &name, e)
        })?;
    }
    Ok(())
}

/// The stand-in for a refused BFQ device line when BFQ cannot take one.
fn not_supported(dir: &Path) -> Error {
    Error::Write { path: dir.join(BFQ), value: String::new(), source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP) }
}

/// `io.max` lines, one per device in the order devices first appear:
/// `(MAJ:MIN, "MAJ:MIN rbps=1048576 wiops=max")`.
pub(crate) fn io_max_lines(b: &LinuxBlockIo) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in Throttle::ALL {
        for d in t.list(b) {
            let name = dev(d.major(), d.minor());
            let value = if d.rate() == 0 { "max".to_owned() } else { d.rate().to_string() };
            let kv = format!(" {}={value}", t.v2_key());
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, line)) => line.push_str(&kv),
                None => out.push((name.clone(), format!("{name}{kv}"))),
            }
        }
    }
    out
}

pub fn stats(dir: &Path, b: &mut Blkio) -> Result<()> {
    const FILE: &str = "io.stat";
    let Some(text) = files::read_opt(dir, FILE)? else {
        return Ok(());
    };
    for (i, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let Some(dev) = parts.next() else { continue };
        let (major, minor) = parse_dev(dir, FILE, i + 1, dev)?;
        for kv in parts {
            let Some((key, value)) = kv.split_once('=') else { continue };
            let (list, op) = match key {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.to_owned(), value: parse_u64(dir, FILE, i + 1, value)? });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::cgroups::blockio::tests::{blkio, fake_sys};

    #[test]
    fn io_max_has_one_line_per_device_and_zero_is_max() {
        let b = blkio(
            r#"{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576},{"major":7,"minor":0,"rate":0}],
                "throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":2097152}],
                "throttleReadIOPSDevice":[{"major":7,"minor":0,"rate":100}],"throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":200}]}"#,
        );
        let lines: Vec<String> = io_max_lines(&b).into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines, ["8:0 rbps=1048576 wbps=2097152 wiops=200", "7:0 rbps=max riops=100"]);
    }

    #[test]
    fn weights_go_to_bfq_as_they_are_else_to_io_weight_converted() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for f in [WEIGHT_FILE, MAX] {
            fs::write(d.join(f), "").unwrap();
        }
        apply(
            d,
            &blkio(r#"{"weight":500,"leafWeight":300,"throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":0}]}"#),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(files::read(d, WEIGHT_FILE).unwrap(), "4950");
        assert_eq!(files::read(d, MAX).unwrap(), "8:0 wbps=max");
        // Without BFQ, a device weight goes to io.weight (io.cost's), converted.
        apply(d, &blkio(r#"{"weightDevice":[{"major":8,"minor":0,"weight":1000}]}"#), Path::new("/x")).unwrap();
        assert_eq!(files::read(d, WEIGHT_FILE).unwrap(), "8:0 10000");
        // With a per-device BFQ, both go there unconverted.
        fs::write(d.join(BFQ), "default 100\n").unwrap();
        apply(d, &blkio(r#"{"weight":500}"#), Path::new("/x")).unwrap();
        assert_eq!(files::read(d, BFQ).unwrap(), "500");
        fs::write(d.join(BFQ), "default 500\n").unwrap(); // as the kernel shows it
        apply(d, &blkio(r#"{"weightDevice":[{"major":8,"minor":0,"weight":10}]}"#), Path::new("/x")).unwrap();
        assert_eq!(files::read(d, BFQ).unwrap(), "8:0 10");
        // An old BFQ (a bare number): device weights go to io.weight.
        fs::write(d.join(BFQ), "100\n").unwrap();
        apply(d, &blkio(r#"{"weightDevice":[{"major":7,"minor":0,"weight":10}]}"#), Path::new("/x")).unwrap();
        assert_eq!(files::read(d, BFQ).unwrap(), "100");
        assert_eq!(files::read(d, WEIGHT_FILE).unwrap(), "7:0 1");
    }

    #[test]
    fn refused_entries_are_named() {
        let t = tempfile::tempdir().unwrap();
        let sys = fake_sys(&t.path().join("sys"));
        let d = t.path().join("cg");
        fs::create_dir(&d).unwrap();
        // No io.max: the write fails, naming the first entry of that device.
        let b = blkio(
            r#"{"throttleReadBpsDevice":[{"major":7,"minor":0,"rate":1}],"throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":1}]}"#,
        );
        let e = apply(&d, &b, &sys).unwrap_err().to_string();
        assert!(e.starts_with("invalid linux.resources.blockIO.throttleReadBpsDevice: [0] 7:0: write \"7:0 rbps=1\""), "{e}");
        let e = apply(&d, &blkio(r#"{"weight":100}"#), &sys).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.blockIO.weight: write \"910\" to"), "{e}");
    }

    #[test]
    fn io_stat_in_v1_shape() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("io.stat"),
            "8:0 rbytes=4096 wbytes=512 rios=1 wios=2 dbytes=0 dios=0\n254:16 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n",
        )
        .unwrap();
        let mut b = Blkio::default();
        stats(t.path(), &mut b).unwrap();
        assert_eq!(b.io_service_bytes_recursive.len(), 4);
        assert_eq!(b.io_service_bytes_recursive[1], BlkioEntry { major: 8, minor: 0, op: "Write".into(), value: 512 });
        assert_eq!(b.io_serviced_recursive[2], BlkioEntry { major: 254, minor: 16, op: "Read".into(), value: 0 });
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["ioServicedRecursive"][2], serde_json::json!({"major": 254, "minor": 16, "op": "Read"}));
        std::fs::write(t.path().join("io.stat"), "sda rbytes=1\n").unwrap();
        assert!(stats(t.path(), &mut Blkio::default()).unwrap_err().to_string().contains("io.stat line 1"));
    }
}
