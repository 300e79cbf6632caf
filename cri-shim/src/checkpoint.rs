//! A container checkpoint archive (CheckpointContainer), laid out as containerd 1.7+ writes it
//! and as checkpointctl and CRI-O read it. No protobuf here: `server/checkpoint_container.rs`
//! makes the metadata and calls in.
//!
//! ```text
//! checkpoint/        CRIU's images (inventory.img, pstree.img, pages-*.img, ...) and
//!                    descriptors.json (the init's stdio, runc's file)
//! config.dump        {"id","name","rootfsImage","rootfsImageRef","rootfsImageName","runtime",
//!                     "createdTime","checkpointedTime","restoredTime","restored"}
//! spec.dump          the OCI runtime spec (config.json) the container runs with
//! status.dump        the CRI ContainerStatus as JSON (proto field names)
//! rootfs-diff.tar    what the container changed in its writable layer: files, directories,
//!                    links it added or modified, as a plain tar (paths relative to `/`)
//! deleted.files      JSON list of the paths it deleted (overlay whiteouts) or replaced with a
//!                    new directory (opaque directories); only when there are some
//! dump.log stats-dump  CRIU's log and statistics (when CRIU wrote them)
//! container.log      the CRI log file so far (when the container has one)
//! ```
//! containerd writes its own `status` file (its internal record) too; roci-cri has none to
//! write. The rootfs diff follows CRI-O and Podman (changed files in the tar, deletions in
//! `deleted.files`, which a restore removes before it unpacks the tar), where containerd writes
//! an OCI layer with `.wh.` whiteout entries. Extended attributes are not kept.
//!
//! The archive is written to a temporary file beside `location` and renamed over it once
//! complete: a failed checkpoint leaves no partial archive.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const CONFIG_DUMP: &str = "config.dump";
pub const SPEC_DUMP: &str = "spec.dump";
pub const STATUS_DUMP: &str = "status.dump";
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
pub const DELETED_FILES: &str = "deleted.files";
pub const DUMP_LOG: &str = "dump.log";
pub const STATS_DUMP: &str = "stats-dump";
pub const CONTAINER_LOG: &str = "container.log";

/// `<root>/checkpoints`: one work directory per checkpoint in progress (CRIU's images and
/// logs), removed when it ends and, for a daemon killed meanwhile, at the next start.
pub fn work_root(root: &Path) -> PathBuf {
    root.join("checkpoints")
}

/// Remove the work directories a killed daemon left under `root` (before serving).
pub fn remove_leftovers(root: &Path) -> Result<()> {
    let dir = work_root(root);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &dir)(e)),
        _ => Ok(()),
    }
}

/// The overlay xattrs that mark a directory opaque (privileged mounts, `userxattr` mounts).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("checkpoint archive: {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io { op, path: path.to_owned(), source }
}

/// What goes into an archive.
#[derive(Debug, Clone)]
pub struct Parts {
    /// CRIU's images directory.
    pub images: PathBuf,
    /// CRIU's work directory (its log and statistics).
    pub work: PathBuf,
    /// The upper directory of the container's overlay snapshot.
    pub upper: PathBuf,
    /// Paths in the container left out of the rootfs diff (the destinations of bind mounts: the
    /// files and directories the runtime made in the writable layer to mount on).
    pub skip: Vec<PathBuf>,
    pub config_dump: Vec<u8>,
    pub spec_dump: Vec<u8>,
    pub status_dump: Vec<u8>,
    /// The CRI log file, when there is one.
    pub container_log: Option<PathBuf>,
}

/// The writable layer's changes: entries to archive (relative to the upper directory, parents
/// before children) and deleted paths (absolute in the container).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub entries: Vec<PathBuf>,
    pub deleted: Vec<String>,
}

/// Walk the upper directory `upper`: whiteouts (0:0 character devices) are deletions, opaque
/// directories are deletions and entries, sockets and `skip`ped paths are left out.
pub fn scan_upper(upper: &Path, skip: &[PathBuf]) -> Result<Diff> {
    let mut diff = Diff::default();
    walk(upper, Path::new(""), skip, &mut diff)?;
    Ok(diff)
}

fn walk(upper: &Path, rel: &Path, skip: &[PathBuf], diff: &mut Diff) -> Result<()> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io("read directory", &dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io("read directory", &dir))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = upper.join(&rel);
        let in_container = Path::new("/").join(&rel);
        if skip.contains(&in_container) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(io("stat", &path))?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            diff.deleted.push(in_container.to_string_lossy().into_owned());
            continue;
        }
        if kind.is_socket() {
            continue;
        }
        diff.entries.push(rel.clone());
        if kind.is_dir() {
            if is_opaque(&path) {
                diff.deleted.push(in_container.to_string_lossy().into_owned());
            }
            walk(upper, &rel, skip, diff)?;
        }
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> bool {
    OPAQUE_XATTRS.iter().any(|name| matches!(xattr::get(dir, name), Ok(Some(v)) if v == b"y"))
}

/// Write the rootfs diff tar of `diff` (entries under `upper`) to `out`.
pub fn write_rootfs_diff(upper: &Path, diff: &Diff, out: &Path) -> Result<()> {
    let file = File::create(out).map_err(io("create", out))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.follow_symlinks(false);
    for rel in &diff.entries {
        let path = upper.join(rel);
        tar.append_path_with_name(&path, rel).map_err(io("add to the rootfs diff", &path))?;
    }
    let mut w = tar.into_inner().map_err(io("finish", out))?;
    w.flush().map_err(io("write", out))?;
    w.get_ref().sync_all().map_err(io("sync", out))
}

/// Write the archive of `parts` at `location` (building the rootfs diff in `scratch`): to a
/// temporary file beside it, renamed over it once complete; nothing is left on failure.
pub fn write_archive(parts: &Parts, scratch: &Path, location: &Path) -> Result<()> {
    let diff = scan_upper(&parts.upper, &parts.skip)?;
    let rootfs_diff = scratch.join(ROOTFS_DIFF);
    write_rootfs_diff(&parts.upper, &diff, &rootfs_diff)?;
    let temp = temp_beside(location);
    let written = write_tar(parts, &diff, &rootfs_diff, &temp)
        .and_then(|()| std::fs::rename(&temp, location).map_err(io("rename the finished archive to", location)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// `<dir>/.<name>.partial-<pid>`: hidden, unique to this daemon.
fn temp_beside(location: &Path) -> PathBuf {
    let name = location.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    location.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn write_tar(parts: &Parts, diff: &Diff, rootfs_diff: &Path, out: &Path) -> Result<()> {
    let file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(out).map_err(io("create", out))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.follow_symlinks(false);
    tar.append_dir_all(CHECKPOINT_DIR, &parts.images).map_err(io("add CRIU's images from", &parts.images))?;
    let mut add_bytes = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data).map_err(io("add", Path::new(name)))
    };
    add_bytes(CONFIG_DUMP, &parts.config_dump)?;
    add_bytes(SPEC_DUMP, &parts.spec_dump)?;
    add_bytes(STATUS_DUMP, &parts.status_dump)?;
    if !diff.deleted.is_empty() {
        let list = serde_json::to_vec(&diff.deleted).expect("a list of strings serialises");
        add_bytes(DELETED_FILES, &list)?;
    }
    let mut files: Vec<(&str, PathBuf)> = vec![
        (ROOTFS_DIFF, rootfs_diff.to_owned()),
        (DUMP_LOG, parts.work.join(libcontainer::criu::DUMP_LOG)),
        (STATS_DUMP, parts.work.join(STATS_DUMP)),
    ];
    if let Some(log) = &parts.container_log {
        files.push((CONTAINER_LOG, log.clone()));
    }
    for (name, path) in files {
        // CRIU's statistics and the log file may be missing; the rootfs diff is always there.
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != ROOTFS_DIFF => continue,
            Err(e) => return Err(io("open", &path)(e)),
        };
        tar.append_file(name, &mut f).map_err(io("add", &path))?;
    }
    let mut w = tar.into_inner().map_err(io("finish", out))?;
    w.flush().map_err(io("write", out))?;
    w.get_ref().sync_all().map_err(io("sync", out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_path: &Path) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(File::open(tar_path).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    /// An upper directory as overlayfs leaves it: a new file, a changed file in a directory, a
    /// whiteout, an opaque directory, a bind mount target, a symlink.
    fn upper(dir: &Path) -> PathBuf {
        let up = dir.join("upper");
        std::fs::create_dir_all(up.join("etc")).unwrap();
        std::fs::create_dir_all(up.join("var/cache")).unwrap();
        std::fs::write(up.join("new"), b"n").unwrap();
        std::fs::write(up.join("etc/changed"), b"c").unwrap();
        std::fs::write(up.join("etc/hosts"), b"").unwrap();
        std::os::unix::fs::symlink("new", up.join("link")).unwrap();
        nix::sys::stat::mknod(&up.join("etc/gone"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
            .expect("mknod a whiteout (as root)");
        xattr::set(up.join("var/cache"), "trusted.overlay.opaque", b"y").expect("set trusted.overlay.opaque (as root)");
        std::fs::write(up.join("var/cache/fresh"), b"f").unwrap();
        up
    }

    #[test]
    fn the_upper_dir_scans_into_changes_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let up = upper(dir.path());
        let diff = scan_upper(&up, &[PathBuf::from("/etc/hosts")]).unwrap();
        let names: Vec<String> = diff.entries.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["etc", "etc/changed", "link", "new", "var", "var/cache", "var/cache/fresh"]);
        assert_eq!(diff.deleted, ["/etc/gone", "/var/cache"]);
    }

    #[test]
    fn an_archive_holds_every_part_and_replaces_the_location_whole() {
        let dir = tempfile::tempdir().unwrap();
        let up = upper(dir.path());
        let images = dir.path().join("images");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(images.join("inventory.img"), b"inv").unwrap();
        std::fs::write(work.join("dump.log"), b"log").unwrap();
        let log = dir.path().join("c.log");
        std::fs::write(&log, b"2024-01-01T00:00:00Z stdout F hi\n").unwrap();
        let parts = Parts {
            images,
            work,
            upper: up,
            skip: vec![PathBuf::from("/etc/hosts")],
            config_dump: b"{}".to_vec(),
            spec_dump: b"{\"ociVersion\":\"1.0.2\"}".to_vec(),
            status_dump: b"{\"id\":\"x\"}".to_vec(),
            container_log: Some(log),
        };
        let location = dir.path().join("out.tar");
        std::fs::write(&location, b"old").unwrap();
        write_archive(&parts, dir.path(), &location).unwrap();
        let got = entries(&location);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "checkpoint/",
                "checkpoint/inventory.img",
                "config.dump",
                "spec.dump",
                "status.dump",
                "deleted.files",
                "rootfs-diff.tar",
                "dump.log",
                "container.log"
            ]
        );
        let deleted: Vec<String> = serde_json::from_slice(&got[5].1).unwrap();
        assert_eq!(deleted, ["/etc/gone", "/var/cache"]);
        let inner = dir.path().join("inner.tar");
        std::fs::write(&inner, &got[6].1).unwrap();
        let diff: Vec<(String, Vec<u8>)> = entries(&inner);
        assert!(diff.contains(&("etc/changed".into(), b"c".to_vec())), "{diff:?}");
        assert!(diff.iter().any(|(n, _)| n == "link"), "{diff:?}");
        assert!(!diff.iter().any(|(n, _)| n == "etc/hosts" || n == "etc/gone"), "{diff:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().contains(".partial-")), "{left:?}");
    }

    #[test]
    fn a_failed_archive_leaves_nothing_at_the_location() {
        let dir = tempfile::tempdir().unwrap();
        let parts = Parts {
            images: dir.path().join("no-images"),
            work: dir.path().join("work"),
            upper: dir.path().to_owned(),
            skip: vec![],
            config_dump: vec![],
            spec_dump: vec![],
            status_dump: vec![],
            container_log: None,
        };
        let scratch = tempfile::tempdir().unwrap();
        let location = dir.path().join("out.tar");
        let e = write_archive(&parts, scratch.path(), &location).unwrap_err().to_string();
        assert!(e.contains("no-images"), "{e}");
        assert!(!location.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().contains(".partial-")), "{left:?}");
    }
}
