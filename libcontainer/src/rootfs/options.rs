//! Mount options of config.json, turned into `mount(2)` flags and data.

use nix::mount::MsFlags;

use crate::sys::mount::{
    MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME,
};

/// A mount's options, split the way `mount(2)` needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Flags for the mount call (and the read-only/nosuid/... remount of a bind).
    pub flags: MsFlags,
    /// Flags the options explicitly clear (`rw`, `suid`, ...), so a bind
    /// remount does not re-add them from the source.
    pub cleared: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, comma-joined (`size=64m,mode=755`).
    pub data: String,
    /// `tmpcopyup`: copy the underlying directory's content into a new tmpfs.
    pub copy_up: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...), set on the mount and
    /// every mount below it after it is made.
    pub recursive: Recursive,
}

/// The recursive attribute words (runtime-spec `mounts[].options`), as
/// `mount_setattr(2)` attributes: later words win over earlier ones, as with
/// the plain options.
///
/// The atime mode is one field, not flags: the kernel replaces it as a whole
/// or not at all, so `rnoatime`, `rstrictatime` and `rrelatime` each choose
/// a mode, and the words that only say "not that mode" (`ratime`,
/// `rnorelatime`, `rnostrictatime`) choose the kernel's default, relatime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recursive {
    pub set: u64,
    pub clear: u64,
    /// The atime mode chosen by the last atime word, if any.
    pub atime: Option<u64>,
}

impl Recursive {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0 && self.atime.is_none()
    }

    /// `attr_set` and `attr_clr` for `mount_setattr`.
    pub fn attributes(&self) -> (u64, u64) {
        match self.atime {
            Some(mode) => (self.set | mode, self.clear | MOUNT_ATTR__ATIME),
            None => (self.set, self.clear),
        }
    }

    /// Parse one word; false when it is not a recursive attribute.
    fn word(&mut self, word: &str) -> bool {
        let (set, clear) = match word {
            "rro" => (MOUNT_ATTR_RDONLY, 0),
            "rrw" => (0, MOUNT_ATTR_RDONLY),
            "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
            "rsuid" => (0, MOUNT_ATTR_NOSUID),
            "rnodev" => (MOUNT_ATTR_NODEV, 0),
            "rdev" => (0, MOUNT_ATTR_NODEV),
            "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
            "rexec" => (0, MOUNT_ATTR_NOEXEC),
            "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
            "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
            "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
            "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
            "rnoatime" => return self.atime_mode(MOUNT_ATTR_NOATIME),
            "rstrictatime" => return self.atime_mode(MOUNT_ATTR_STRICTATIME),
            "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => return self.atime_mode(MOUNT_ATTR_RELATIME),
            _ => return false,
        };
        self.set = (self.set | set) & !clear;
        self.clear = (self.clear | clear) & !set;
        true
    }

    fn atime_mode(&mut self, mode: u64) -> bool {
        self.atime = Some(mode);
        true
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            copy_up: false,
            recursive: Recursive::default(),
        }
    }
}

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

impl Options {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// Every option word [`parse`] understands (for the features document).
pub const KNOWN: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Whether `word` is one of the recursive attribute words (`rro`, ...).
pub fn is_recursive_word(word: &str) -> bool {
    Recursive::default().word(word)
}

/// The propagation flags for a propagation keyword, also used for
/// `linux.rootfsPropagation`.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Parse a mount's `options` list. Unknown words go to the filesystem as
/// data, as mount(8) does.
pub fn parse(options: &[String]) -> Options {
    let mut o = Options::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "iversion" => (MsFlags::MS_I_VERSION, MsFlags::empty()),
            "noiversion" => (MsFlags::empty(), MsFlags::MS_I_VERSION),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "nosymfollow" => (MS_NOSYMFOLLOW, MsFlags::empty()),
            "symfollow" => (MsFlags::empty(), MS_NOSYMFOLLOW),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "tmpcopyup" => {
                o.copy_up = true;
                continue;
            }
            // Idmapping is driven by the mount's uid/gid mappings.
            "idmap" | "ridmap" => continue,
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else if !o.recursive.word(other) {
                    data.push(other);
                }
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
        o.cleared.insert(clear);
        o.cleared.remove(set);
    }
    o.data = data.join(",");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> Options {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.is_bind());
    }

    #[test]
    fn later_option_wins() {
        let o = p(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        let o = p(&["rw", "ro"]);
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
        assert!(!o.cleared.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn bind_and_propagation() {
        let o = p(&["rbind", "rprivate", "ro"]);
        assert!(o.is_bind());
        assert!(o.flags.contains(MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.data, "");
    }

    #[test]
    fn recursive_attributes_are_not_data() {
        let o = p(&["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnodiratime", "rnosymfollow", "size=1m"]);
        assert_eq!(o.data, "size=1m");
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC, "no plain flags from recursive words");
        let all = MOUNT_ATTR_RDONLY
            | MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | MOUNT_ATTR_NOEXEC
            | MOUNT_ATTR_NODIRATIME
            | MOUNT_ATTR_NOSYMFOLLOW;
        assert_eq!(o.recursive.attributes(), (all, 0));
        // Their opposites clear them, the last word winning.
        let o = p(&["rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rsymfollow", "rdiratime"]);
        assert_eq!(o.recursive.attributes(), (0, all));
        let o = p(&["rrw", "rro"]);
        assert_eq!(o.recursive.attributes(), (MOUNT_ATTR_RDONLY, 0));
        assert!(p(&["ro", "nosuid"]).recursive.is_empty());
    }

    #[test]
    fn recursive_atime_replaces_the_whole_mode() {
        for (words, mode) in [
            (&["rnoatime"][..], MOUNT_ATTR_NOATIME),
            (&["rstrictatime"], MOUNT_ATTR_STRICTATIME),
            (&["rrelatime"], MOUNT_ATTR_RELATIME),
            (&["rnoatime", "ratime"], MOUNT_ATTR_RELATIME),
            (&["rstrictatime", "rnostrictatime"], MOUNT_ATTR_RELATIME),
            (&["rnorelatime"], MOUNT_ATTR_RELATIME),
            (&["rrelatime", "rnoatime"], MOUNT_ATTR_NOATIME),
        ] {
            assert_eq!(p(words).recursive.attributes(), (mode, MOUNT_ATTR__ATIME), "{words:?}");
        }
    }

    #[test]
    fn every_recursive_word_is_known() {
        for w in ["rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnoatime", "ratime", "rrelatime"] {
            assert!(KNOWN.contains(&w), "{w}");
            assert!(!p(&[w]).recursive.is_empty(), "{w}");
        }
        for w in ["rnorelatime", "rstrictatime", "rnostrictatime", "rnodiratime", "rdiratime", "rnosymfollow", "rsymfollow"] {
            assert!(KNOWN.contains(&w), "{w}");
            assert!(!p(&[w]).recursive.is_empty(), "{w}");
        }
    }

    #[test]
    fn tmpcopyup_is_not_data() {
        let o = p(&["tmpcopyup", "size=1m"]);
        assert!(o.copy_up);
        assert_eq!(o.data, "size=1m");
    }
}
