//! v2 `io` (statistics only; `linux.resources.blockIO` is not applied yet):
//! `io.stat`, one line per device (`8:0 rbytes=4096 wbytes=0 rios=1 wios=0
//! dbytes=0 dios=0`), reported as runc does in v1's shape: bytes and
//! operations, each `Read` and `Write`.

use std::path::Path;

use crate::cgroups::stats::{parse_dev, parse_u64, Blkio, BlkioEntry};
use crate::cgroups::{files, Result};

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
    use super::*;

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
