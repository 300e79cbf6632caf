//! `/proc/self/mountinfo`, parsed once for the modules that read it
//! (cgroup detection, the rootfs's parent mount, CRIU's external mounts).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One line: `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `major:minor` of the filesystem.
    pub dev: String,
    /// The path inside the filesystem that is mounted.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// The optional fields (`shared:N`, `master:N`, ...).
    pub optional: Vec<String>,
    pub fstype: String,
    pub super_options: String,
}

impl Entry {
    /// Whether the mount is a peer in a shared propagation group.
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("shared:"))
    }
}

/// Parse a line; `None` for a malformed one.
pub fn parse_line(line: &str) -> Option<Entry> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let (_id, _parent, dev) = (l.next()?, l.next()?, l.next()?);
    let root = unescape(l.next()?);
    let mount_point = unescape(l.next()?);
    let _options = l.next()?;
    let optional = l.filter(|f| !f.is_empty()).map(str::to_owned).collect();
    let mut r = right.split(' ');
    let fstype = r.next()?.to_owned();
    let _source = r.next()?;
    let super_options = r.next().unwrap_or("").to_owned();
    Some(Entry { dev: dev.to_owned(), root, mount_point, optional, fstype, super_options })
}

/// Every well-formed line of `text`.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` (octal).
pub fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_fields() {
        let e =
            parse_line("36 35 98:0 /mnt\\0401 /mnt2 rw,noatime shared:3 master:1 - ext3 /dev/root rw,errors=continue").unwrap();
        assert_eq!(e.dev, "98:0");
        assert_eq!(e.root, PathBuf::from("/mnt 1"));
        assert_eq!(e.mount_point, PathBuf::from("/mnt2"));
        assert_eq!(e.optional, ["shared:3", "master:1"]);
        assert!(e.is_shared());
        assert_eq!(e.fstype, "ext3");
        assert_eq!(e.super_options, "rw,errors=continue");
        let e = parse_line("40 1 0:5 / /sys rw - sysfs sysfs rw").unwrap();
        assert!(e.optional.is_empty() && !e.is_shared());
        assert!(parse_line("garbage").is_none());
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/x\\134y"), PathBuf::from("/x\\y"));
        assert_eq!(unescape("/end\\04"), PathBuf::from("/end\\04"));
        assert_eq!(unescape("\\011tab"), PathBuf::from("\ttab"));
    }
}
