//! v1 `blkio` (statistics only; `linux.resources.blockIO` is not applied
//! yet): bytes and operations per device and direction, from the first of
//! these that has any device line, as runc looks for them: the CFQ
//! scheduler's `blkio.io_service_bytes_recursive` and
//! `blkio.io_serviced_recursive` (kernels before 5.0), BFQ's
//! `blkio.bfq.io_*_recursive`, then the throttling layer's
//! `blkio.throttle.io_*_recursive`, which every kernel with blkio counts.

use std::path::Path;

use crate::cgroups::stats::{parse_dev, parse_u64, Blkio, BlkioEntry};
use crate::cgroups::{files, Result};

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

    #[test]
    fn the_first_source_with_devices_wins() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("blkio.bfq.io_service_bytes_recursive"), "Total 0\n").unwrap();
        fs::write(d.join("blkio.throttle.io_service_bytes_recursive"), "8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n")
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
