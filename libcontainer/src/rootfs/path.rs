//! Resolving paths inside the container's root filesystem.
//!
//! A mount destination such as `/var/run/x` is looked up one component at a
//! time from an fd of the rootfs, with `O_NOFOLLOW`, so a symlink anywhere on
//! the way is followed by us, as if the rootfs were `/`: `..` never climbs
//! above the rootfs and an absolute link target restarts at the rootfs. The
//! container's image can therefore not redirect a mount onto the host, and a
//! component swapped for a symlink while we walk is seen and resolved the
//! same way, because each step works on an fd we already hold.
//!
//! Missing components are created, as runc and crun do for mount
//! destinations. The result is an `O_PATH` fd whose `/proc/self/fd/N` path is
//! what `mount(2)` is given.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// Longest chain of symlinks followed in one lookup, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// What to create when the last component does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing path is an error.
    Nothing,
    Dir,
    File,
}

#[derive(Debug, thiserror::Error)]
#[error("resolve {path} in {root}: {reason}")]
pub struct Error {
    pub root: PathBuf,
    pub path: PathBuf,
    pub reason: String,
}

/// The magic-link path through which the kernel reaches an fd's file.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Resolve `path` inside the directory `root` (see the module docs).
///
/// With `final_symlink_ok == false` the last component must not be a
/// symlink (used for `/proc` and `/sys`, which must be mounted on real
/// directories of the rootfs).
pub fn resolve(
    root: BorrowedFd<'_>,
    root_path: &Path,
    path: &Path,
    create: Create,
    final_symlink_ok: bool,
) -> Result<OwnedFd, Error> {
    let fail = |reason: String| Error { root: root_path.to_owned(), path: path.to_owned(), reason };
    let mut stack: Vec<OwnedFd> = vec![reopen_dir(root).map_err(|e| fail(format!("open root: {e}")))?];
    let mut queue: Vec<Vec<u8>> = Vec::new();
    push_components(&mut queue, path);
    let mut links = 0;

    while let Some(name) = queue.pop() {
        match name.as_slice() {
            b"." => continue,
            b".." => {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        let last = queue.is_empty();
        let dir = stack.last().expect("stack holds the root");
        let name_os = OsStr::from_bytes(&name);
        let fd = match open_nofollow(dir.as_fd(), name_os) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let what = if last { create } else { Create::Dir };
                match what {
                    Create::Nothing => return Err(fail(format!("{}: does not exist", name_os.to_string_lossy()))),
                    Create::Dir => match mkdirat(dir.as_fd(), name_os, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fail(format!("mkdir {}: {e}", name_os.to_string_lossy()))),
                    },
                    Create::File => {
                        match openat(
                            dir.as_fd(),
                            name_os,
                            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o644),
                        ) {
                            Ok(_) | Err(Errno::EEXIST) => {}
                            Err(e) => return Err(fail(format!("create {}: {e}", name_os.to_string_lossy()))),
                        }
                    }
                }
                // Look again: what is there now may be something else if
                // the rootfs changed under us; the loop handles any kind.
                queue.push(name);
                continue;
            }
            Err(e) => return Err(fail(format!("open {}: {e}", name_os.to_string_lossy()))),
        };
        let st = fstat(fd.as_fd()).map_err(|e| fail(format!("stat {}: {e}", name_os.to_string_lossy())))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            if last && !final_symlink_ok {
                return Err(fail(format!("{} is a symlink; a real directory is required", name_os.to_string_lossy())));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(fail("too many levels of symbolic links".into()));
            }
            let target =
                readlinkat(dir.as_fd(), name_os).map_err(|e| fail(format!("readlink {}: {e}", name_os.to_string_lossy())))?;
            let target = Path::new(&target);
            if target.is_absolute() {
                stack.truncate(1);
            }
            push_components(&mut queue, target);
            continue;
        }
        if !last && kind != SFlag::S_IFDIR {
            return Err(fail(format!("{} is not a directory", name_os.to_string_lossy())));
        }
        if last {
            return Ok(fd);
        }
        stack.push(fd);
    }
    // The path named the root itself ("/", "/.", "/a/..").
    Ok(stack.swap_remove(0))
}

/// Push `path`'s components so that popping yields them in order.
fn push_components(queue: &mut Vec<Vec<u8>>, path: &Path) {
    let comps: Vec<Vec<u8>> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            Component::ParentDir => Some(b"..".to_vec()),
            Component::CurDir => Some(b".".to_vec()),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    queue.extend(comps.into_iter().rev());
}

fn open_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

fn reopen_dir(fd: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    openat(fd, ".", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

/// Whether the fd is a directory.
pub fn is_dir(fd: BorrowedFd<'_>) -> bool {
    fstat(fd).map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let fd = nix::fcntl::open(&dir.path().join("root"), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        (dir, fd)
    }

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(proc_fd_path(fd.as_fd())).unwrap()
    }

    #[test]
    fn creates_missing_dirs() {
        let (dir, fd) = root();
        let got = resolve(fd.as_fd(), Path::new("r"), Path::new("/a/b/c"), Create::Dir, true).unwrap();
        assert_eq!(real(&got), dir.path().join("root/a/b/c"));
        assert!(is_dir(got.as_fd()));
    }

    #[test]
    fn creates_file() {
        let (dir, fd) = root();
        let got = resolve(fd.as_fd(), Path::new("r"), Path::new("/etc/hosts"), Create::File, true).unwrap();
        assert_eq!(real(&got), dir.path().join("root/etc/hosts"));
        assert!(!is_dir(got.as_fd()));
    }

    #[test]
    fn dotdot_stays_inside() {
        let (dir, fd) = root();
        let got = resolve(fd.as_fd(), Path::new("r"), Path::new("/../../x/../../y"), Create::Dir, true).unwrap();
        assert_eq!(real(&got), dir.path().join("root/y"));
    }

    #[test]
    fn absolute_symlink_is_rooted() {
        let (dir, fd) = root();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, dir.path().join("root/escape")).unwrap();
        let got = resolve(fd.as_fd(), Path::new("r"), Path::new("/escape/sub"), Create::Dir, true).unwrap();
        assert_eq!(real(&got), dir.path().join("root").join(outside.strip_prefix("/").unwrap()).join("sub"));
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "nothing created outside");
    }

    #[test]
    fn relative_symlink_with_dotdot_is_rooted() {
        let (dir, fd) = root();
        symlink("../../../../outside", dir.path().join("root/escape")).unwrap();
        let got = resolve(fd.as_fd(), Path::new("r"), Path::new("/escape/sub"), Create::Dir, true).unwrap();
        assert_eq!(real(&got), dir.path().join("root/outside/sub"));
        assert!(!dir.path().join("outside").exists());
    }

    #[test]
    fn symlink_inside_is_followed() {
        let (dir, fd) = root();
        std::fs::create_dir_all(dir.path().join("root/real/dir")).unwrap();
        symlink("real/dir", dir.path().join("root/link")).unwrap();
        let got = resolve(fd.as_fd(), Path::new("r"), Path::new("/link/../x"), Create::Dir, true).unwrap();
        assert_eq!(real(&got), dir.path().join("root/real/x"));
    }

    #[test]
    fn final_symlink_refused_when_asked() {
        let (dir, fd) = root();
        std::fs::create_dir(dir.path().join("root/realproc")).unwrap();
        symlink("/realproc", dir.path().join("root/proc")).unwrap();
        let err = resolve(fd.as_fd(), Path::new("r"), Path::new("/proc"), Create::Dir, false).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let (dir, fd) = root();
        symlink("/b", dir.path().join("root/a")).unwrap();
        symlink("/a", dir.path().join("root/b")).unwrap();
        let err = resolve(fd.as_fd(), Path::new("r"), Path::new("/a/x"), Create::Dir, true).unwrap_err();
        assert!(err.to_string().contains("too many"), "{err}");
    }

    #[test]
    fn file_in_the_middle_is_an_error() {
        let (dir, fd) = root();
        std::fs::write(dir.path().join("root/f"), "").unwrap();
        assert!(resolve(fd.as_fd(), Path::new("r"), Path::new("/f/x"), Create::Dir, true).is_err());
    }

    #[test]
    fn missing_without_create_is_an_error() {
        let (_dir, fd) = root();
        assert!(resolve(fd.as_fd(), Path::new("r"), Path::new("/nope"), Create::Nothing, true).is_err());
    }
}
