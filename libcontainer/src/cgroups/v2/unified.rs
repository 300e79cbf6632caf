//! `linux.resources.unified`: raw cgroup v2 files by name, written last so
//! they override the mapped values (as runc does).

use std::path::Path;

use crate::cgroups::{files, Error, Result};

const FIELD: &str = "linux.resources.unified";

/// The controller a file name belongs to (`memory` for `memory.high`,
/// `cgroup` for core files), after checking the name is a plain file name.
pub fn controller_of(key: &str) -> Result<&str> {
    let invalid = |why: &str| Error::Invalid { field: FIELD, reason: format!("{key:?}: {why}") };
    if key.contains('/') || key.chars().any(char::is_control) {
        return Err(invalid("not a file name"));
    }
    match key.split_once('.') {
        Some((c, rest)) if !c.is_empty() && !rest.is_empty() => {
            if c == "cgroup" && matches!(rest, "procs" | "threads" | "kill" | "subtree_control" | "type" | "freeze") {
                return Err(invalid("is managed by the runtime"));
            }
            Ok(c)
        }
        _ => Err(invalid("not a <controller>.<knob> name")),
    }
}

/// How errors name one key: `linux.resources.unified["misc.max"]`.
pub(crate) fn field(key: &str) -> String {
    format!("{FIELD}[{key:?}]")
}

/// Write one key. A file the directory lacks (a knob this kernel or
/// controller does not have) and a value the kernel refuses are errors
/// naming the key.
pub fn apply(dir: &Path, key: &str, value: &str) -> Result<()> {
    files::write(dir, key, value).map_err(|e| {
        if files::is_write_missing(&e) {
            Error::Invalid { field: FIELD, reason: format!("{key:?}: no such file in {}", dir.display()) }
        } else {
            Error::Field { field: field(key), source: Box::new(e) }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(controller_of("memory.high").unwrap(), "memory");
        assert_eq!(controller_of("cgroup.max.depth").unwrap(), "cgroup");
        assert_eq!(controller_of("io.bfq.weight").unwrap(), "io");
        for bad in ["../memory.max", "memory", ".max", "memory.", "cgroup.procs", "a/b.c", "x.y\n"] {
            assert!(controller_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_files_name_the_key() {
        let t = tempfile::tempdir().unwrap();
        let e = apply(t.path(), "memory.high", "1").unwrap_err();
        assert!(e.to_string().contains("memory.high\": no such file"), "{e}");
        std::fs::write(t.path().join("memory.high"), "max").unwrap();
        apply(t.path(), "memory.high", "1").unwrap();
        // A refused value names the key.
        std::fs::create_dir(t.path().join("misc.max")).unwrap();
        let e = apply(t.path(), "misc.max", "sev 1").unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.unified[\"misc.max\"]: write \"sev 1\" to "), "{e}");
    }
}
