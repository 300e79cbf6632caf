//! Every read, write, mkdir and rmdir of cgroup files, with a debug line at
//! each kernel write and errors that name the file.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

use super::{Error, Result};

pub(crate) fn read_path(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })
}

/// A control file's content, without the trailing newline.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let mut s = read_path(&dir.join(file))?;
    while s.ends_with('\n') {
        s.pop();
    }
    Ok(s)
}

/// Like [`read`], `None` when the file does not exist (a controller or
/// feature this kernel lacks).
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(Error::Read { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Write `value` to an existing control file in one `write(2)`, as cgroup
/// files require. Never creates the file: a missing one means the kernel
/// lacks the knob, and the error says so.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    tracing::debug!(path = %path.display(), value, "cgroup write");
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| Error::Write { path, value: value.to_owned(), source })
}

/// Whether an error is a failed write with this errno.
pub(crate) fn is_write_errno(e: &Error, errno: i32) -> bool {
    matches!(e, Error::Write { source, .. } if source.raw_os_error() == Some(errno))
}

/// Whether an error is a write to a file that does not exist.
pub(crate) fn is_write_missing(e: &Error) -> bool {
    matches!(e, Error::Write { source, .. } if source.kind() == ErrorKind::NotFound)
}

/// `mkdir -p dir`, where `base` (a hierarchy's mountpoint) exists. Returns
/// the directories it created, top first.
pub(crate) fn mkdir_all(base: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let rel = dir.strip_prefix(base).map_err(|_| Error::Create {
        path: dir.to_owned(),
        source: io::Error::new(ErrorKind::InvalidInput, format!("not below the hierarchy at {}", base.display())),
    })?;
    let mut created = Vec::new();
    let mut cur = base.to_owned();
    for c in rel.components() {
        cur.push(c);
        match DirBuilder::new().mode(0o755).create(&cur) {
            Ok(()) => {
                tracing::debug!(path = %cur.display(), "cgroup mkdir");
                created.push(cur.clone());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists && cur.is_dir() => {}
            Err(source) => {
                remove_created(&created);
                return Err(Error::Create { path: cur, source });
            }
        }
    }
    Ok(created)
}

/// Undo [`mkdir_all`] after a later step failed: remove what was created,
/// deepest first, ignoring errors (an error is already on its way up).
pub(crate) fn remove_created(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let r = fs::remove_dir(d);
        tracing::debug!(path = %d.display(), ok = r.is_ok(), "cgroup rmdir (rollback)");
    }
}

pub(crate) fn rmdir(dir: &Path) -> io::Result<()> {
    tracing::debug!(path = %dir.display(), "cgroup rmdir");
    fs::remove_dir(dir)
}

/// The processes in `dir/cgroup.procs` (this cgroup only); empty when the
/// cgroup is gone.
pub(crate) fn procs(dir: &Path) -> Result<Vec<Pid>> {
    let Some(text) = read_opt(dir, "cgroup.procs")? else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.trim().parse::<i32>().map(Pid::from_raw).map_err(|_| Error::Parse {
                path: dir.join("cgroup.procs"),
                line: 0,
                reason: format!("not a pid: {l:?}"),
            })
        })
        .collect()
}

/// The cgroups below `dir` (its subdirectories, recursively), deepest first;
/// the ones that vanish while walking are skipped.
pub(crate) fn descendants(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Read { path: dir.to_owned(), source }),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Read { path: dir.to_owned(), source }),
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let sub = entry.path();
            walk(&sub, out)?;
            out.push(sub);
        }
    }
    Ok(())
}

/// The processes in `dir` and every cgroup below it, sorted, no duplicates.
pub(crate) fn procs_recursive(dir: &Path) -> Result<Vec<Pid>> {
    let mut all = procs(dir)?;
    for d in descendants(dir)? {
        all.extend(procs(&d)?);
    }
    all.sort_unstable();
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_needs_an_existing_file_and_replaces_it() {
        let t = tempfile::tempdir().unwrap();
        let e = write(t.path(), "memory.max", "1").unwrap_err();
        assert!(is_write_missing(&e), "{e}");
        assert!(e.to_string().contains("memory.max"), "{e}");
        assert!(!t.path().join("memory.max").exists());
        fs::write(t.path().join("memory.max"), "max\n").unwrap();
        write(t.path(), "memory.max", "1").unwrap();
        assert_eq!(read(t.path(), "memory.max").unwrap(), "1");
        assert_eq!(read_opt(t.path(), "nope").unwrap(), None);
    }

    #[test]
    fn mkdir_all_reports_what_it_created_and_walks_deepest_first() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("a")).unwrap();
        let created = mkdir_all(t.path(), &t.path().join("a/b/c")).unwrap();
        assert_eq!(created, [t.path().join("a/b"), t.path().join("a/b/c")]);
        assert!(mkdir_all(t.path(), &t.path().join("a/b/c")).unwrap().is_empty());
        assert!(mkdir_all(&t.path().join("x"), &t.path().join("a")).is_err());
        fs::write(t.path().join("a/b/file"), "").unwrap();
        fs::create_dir(t.path().join("a/b/d")).unwrap();
        let mut d = descendants(&t.path().join("a")).unwrap();
        let last = d.pop().unwrap();
        assert_eq!(last, t.path().join("a/b"));
        d.sort();
        assert_eq!(d, [t.path().join("a/b/c"), t.path().join("a/b/d")]);
        // a/b holds more than what mkdir_all made: only a/b/c goes.
        remove_created(&created);
        assert!(!t.path().join("a/b/c").exists());
        assert!(t.path().join("a/b/d").exists());
    }

    #[test]
    fn procs_are_read_recursively() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("sub/deeper")).unwrap();
        fs::write(t.path().join("cgroup.procs"), "12\n7\n").unwrap();
        fs::write(t.path().join("sub/cgroup.procs"), "").unwrap();
        fs::write(t.path().join("sub/deeper/cgroup.procs"), "7\n30\n").unwrap();
        let pids: Vec<i32> = procs_recursive(t.path()).unwrap().into_iter().map(Pid::as_raw).collect();
        assert_eq!(pids, [7, 12, 30]);
        assert!(procs(&t.path().join("gone")).unwrap().is_empty());
        fs::write(t.path().join("cgroup.procs"), "x\n").unwrap();
        assert!(procs(t.path()).is_err());
    }
}
