//! v1 `cpuset`: `cpuset.cpus` and `cpuset.mems`.
//!
//! A new v1 cpuset directory starts with both empty, and the kernel refuses
//! to move a task into it (`ENOSPC`) until they are set. So directories roci
//! creates get their parent's values copied down, top first, and the
//! container's own directory gets them before a task joins, after the
//! configured values (which may narrow them) are written.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxCpu;

use crate::cgroups::{files, Error, Result};

const CPUS: &str = "cpuset.cpus";
const MEMS: &str = "cpuset.mems";

/// `cpus` and `mems`, when set, then fill what is still empty from the parent.
pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        files::write(dir, CPUS, cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        files::write(dir, MEMS, mems)?;
    }
    ensure(dir)
}

/// Copy the parent's values into each directory in `created` (top first)
/// whose values are empty.
pub fn seed(created: &[PathBuf]) -> Result<()> {
    created.iter().try_for_each(|d| ensure(d))
}

/// Make `dir` able to take tasks: copy each empty value from its parent.
pub fn ensure(dir: &Path) -> Result<()> {
    for file in [CPUS, MEMS] {
        if !files::read(dir, file)?.trim().is_empty() {
            continue;
        }
        let parent = dir.parent().unwrap_or(dir);
        let value = parent_value(parent, file)?;
        if value.trim().is_empty() {
            // Only a directory someone else made (or a crashed run left) can
            // be empty above ours; it is not ours to fill.
            return Err(Error::Invalid {
                field: "linux.cgroupsPath",
                reason: format!("{} is empty, so no task can join a cpuset below it", parent.join(file).display()),
            });
        }
        files::write(dir, file, value.trim())?;
    }
    Ok(())
}

/// How long [`parent_value`] waits for a parent that another process has
/// just made to be filled by it.
const PARENT_FILL_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// `file` of `parent`. An empty value is read again for a short while: two
/// creates under one new parent race, and the one that lost the `mkdir`
/// may look before the winner has copied the values down (the winner fills
/// it within microseconds; a parent still empty after the wait is refused).
fn parent_value(parent: &Path, file: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + PARENT_FILL_WAIT;
    loop {
        let value = files::read(parent, file)?;
        if !value.trim().is_empty() || std::time::Instant::now() >= deadline {
            return Ok(value);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn cpuset_dir(d: &Path, cpus: &str, mems: &str) {
        fs::create_dir_all(d).unwrap();
        fs::write(d.join(CPUS), cpus).unwrap();
        fs::write(d.join(MEMS), mems).unwrap();
    }

    #[test]
    fn new_dirs_copy_from_the_nearest_populated_ancestor_top_first() {
        let t = tempfile::tempdir().unwrap();
        cpuset_dir(t.path(), "0-3\n", "0\n");
        let (a, b) = (t.path().join("a"), t.path().join("a/b"));
        cpuset_dir(&a, "\n", "\n");
        cpuset_dir(&b, "", "");
        seed(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(files::read(&b, CPUS).unwrap(), "0-3");
        assert_eq!(files::read(&b, MEMS).unwrap(), "0");
        // Configured values narrow the seed; an empty field leaves it.
        let c: LinuxCpu = serde_json::from_str(r#"{"cpus":"1","mems":""}"#).unwrap();
        apply(&b, &c).unwrap();
        assert_eq!(files::read(&b, CPUS).unwrap(), "1");
        assert_eq!(files::read(&b, MEMS).unwrap(), "0");
    }

    #[test]
    fn an_empty_foreign_parent_is_an_error_not_a_write() {
        let t = tempfile::tempdir().unwrap();
        cpuset_dir(t.path(), "", "0");
        let a = t.path().join("a");
        cpuset_dir(&a, "", "");
        let e = ensure(&a).unwrap_err();
        assert!(e.to_string().contains("cpuset.cpus is empty"), "{e}");
        assert_eq!(files::read(t.path(), CPUS).unwrap(), "");
    }

    #[test]
    fn a_parent_another_create_is_filling_is_waited_for() {
        let t = tempfile::tempdir().unwrap();
        cpuset_dir(t.path(), "", "");
        let a = t.path().join("a");
        cpuset_dir(&a, "", "");
        let top = t.path().to_path_buf();
        let filler = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            fs::write(top.join(CPUS), "0-1").unwrap();
            fs::write(top.join(MEMS), "0").unwrap();
        });
        ensure(&a).unwrap();
        filler.join().unwrap();
        assert_eq!(files::read(&a, CPUS).unwrap(), "0-1");
        assert_eq!(files::read(&a, MEMS).unwrap(), "0");
    }
}
