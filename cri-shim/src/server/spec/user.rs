//! The process's user, as containerd resolves it (`oci.WithUser`, `WithUserID`, `WithUsername`,
//! `WithAdditionalGIDs`, `WithSupplementalGroups`):
//!
//! - the user string is `run_as_username` or `run_as_user`, with `:<run_as_group>`; a group
//!   without a user is refused; without either, the image's `User`;
//! - `uid` alone: its passwd entry gives the group (gid 0 when it has none, or there is no
//!   passwd file); `name` alone: must be in passwd; `user:group`: each part a number or a name
//!   that must be found;
//! - additional gids: the primary gid, the groups of `/etc/group` that list the user by name
//!   (unless `supplemental_groups_policy` is Strict), and `supplemental_groups`, sorted, once each.
//!
//! The image's files are read inside the rootfs with roci's resolver (each component opened
//! from the rootfs with `O_NOFOLLOW`, symlinks followed as if the rootfs were `/`), so an image
//! whose `/etc/passwd` is a symlink to a host path reads its own tree, never the host's.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use roci_cri_proto::runtime_v1 as v1;

use super::SpecError;

/// The largest passwd or group file read (1 MiB): a bigger one is refused, not read into memory.
const MAX_FILE: u64 = 1 << 20;

/// The image's passwd and group files, as read from its rootfs (`None`: missing).
#[derive(Debug, Default)]
pub struct Files {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

impl Files {
    /// Read `/etc/passwd` and `/etc/group` inside `rootfs`.
    pub fn read(rootfs: &Path) -> Result<Files, SpecError> {
        let root =
            File::open(rootfs).map_err(|source| SpecError::Io { op: "open the rootfs", path: rootfs.to_owned(), source })?;
        Ok(Files { passwd: read_in_root(&root, rootfs, "/etc/passwd")?, group: read_in_root(&root, rootfs, "/etc/group")? })
    }
}

/// A small file of the image by its path inside the rootfs; `None` when it does not resolve to
/// a regular file.
fn read_in_root(root: &File, rootfs: &Path, path: &str) -> Result<Option<String>, SpecError> {
    use libcontainer::rootfs::path::{proc_fd_path, resolve, Create};
    let Ok(fd) = resolve(root.as_fd(), rootfs, Path::new(path), Create::Nothing, true) else {
        return Ok(None);
    };
    let p = proc_fd_path(fd.as_fd());
    let full = rootfs.join(path.trim_start_matches('/'));
    let io = |op, source| SpecError::Io { op, path: full.clone(), source };
    let meta = std::fs::metadata(&p).map_err(|e| io("stat", e))?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > MAX_FILE {
        return Err(io("read", std::io::Error::other(format!("larger than {MAX_FILE} bytes"))));
    }
    let mut data = Vec::new();
    File::open(&p).and_then(|f| f.take(MAX_FILE).read_to_end(&mut data)).map_err(|e| io("read", e))?;
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

struct PwEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GrEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PwEntry<'_>> {
    passwd.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4).then_some(())?;
        Some(PwEntry { name: f[0], uid: f[2].trim().parse().ok()?, gid: f[3].trim().parse().ok()? })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GrEntry<'_>> {
    group.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3).then_some(())?;
        let members = f.get(3).map(|m| m.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        Some(GrEntry { name: f[0], gid: f[2].trim().parse().ok()?, members })
    })
}

/// containerd's `generateUserString`: `username`, else `uid`, with `:gid` when a group is given.
pub fn user_string(
    username: &str,
    uid: Option<&v1::Int64Value>,
    gid: Option<&v1::Int64Value>,
    field: &str,
) -> Result<String, SpecError> {
    let id = |v: &v1::Int64Value, name: &str| {
        if (0..=i64::from(i32::MAX)).contains(&v.value) {
            Ok(v.value.to_string())
        } else {
            Err(SpecError::invalid(format!("{field}.{name}"), format!("{} is not an id in 0..={}", v.value, i32::MAX)))
        }
    };
    let mut user = match uid {
        Some(u) => id(u, "run_as_user")?,
        None => String::new(),
    };
    if !username.is_empty() {
        user = username.to_owned();
    }
    let group = gid.map(|g| id(g, "run_as_group")).transpose()?;
    match (user.is_empty(), group) {
        (true, Some(g)) => Err(SpecError::invalid(format!("{field}.run_as_group"), format!("group {g} is given without a user"))),
        (true, None) => Ok(String::new()),
        (false, Some(g)) => Ok(format!("{user}:{g}")),
        (false, None) => Ok(user),
    }
}

/// A number in containerd's id range, or `None` (then the part is a name).
fn number(s: &str) -> Option<u32> {
    s.parse::<i64>().ok().filter(|v| (0..=i64::from(i32::MAX)).contains(v)).map(|v| v as u32)
}

/// containerd's `WithUser`: the uid and gid of a user string (`""` is root). `what` names the
/// source of the string in errors.
pub fn resolve(userstr: &str, files: &Files, what: &str) -> Result<(u32, u32), SpecError> {
    if userstr.is_empty() {
        return Ok((0, 0));
    }
    let no_user = |name: &str| SpecError::invalid(what, format!("no user {name:?} in the image's /etc/passwd"));
    let no_group = |name: &str| SpecError::invalid(what, format!("no group {name:?} in the image's /etc/group"));
    let by_name =
        |name: &str| passwd_entries(files.passwd.as_deref().unwrap_or("")).find(|e| e.name == name).map(|e| (e.uid, e.gid));
    let parts: Vec<&str> = userstr.split(':').collect();
    match parts.as_slice() {
        [user] => match number(user) {
            Some(uid) => {
                let gid = passwd_entries(files.passwd.as_deref().unwrap_or("")).find(|e| e.uid == uid).map_or(0, |e| e.gid);
                Ok((uid, gid))
            }
            None => by_name(user).ok_or_else(|| no_user(user)),
        },
        [user, group] => {
            let uid = match number(user) {
                Some(uid) => uid,
                None => by_name(user).ok_or_else(|| no_user(user))?.0,
            };
            let gid = match number(group) {
                Some(gid) => gid,
                None => group_entries(files.group.as_deref().unwrap_or(""))
                    .find(|g| g.name == *group)
                    .map(|g| g.gid)
                    .ok_or_else(|| no_group(group))?,
            };
            Ok((uid, gid))
        }
        _ => Err(SpecError::invalid(what, format!("invalid user {userstr:?}: more than one ':'"))),
    }
}

/// containerd's `WithAdditionalGIDs`: the gids of the groups that list `user` (a name, or a uid
/// looked up in passwd) as a member, except a group named as the user.
pub fn member_gids(user: &str, files: &Files) -> Vec<u32> {
    let name = match user.parse::<i64>() {
        Ok(uid) => match passwd_entries(files.passwd.as_deref().unwrap_or("")).find(|e| i64::from(e.uid) == uid) {
            Some(e) => e.name.to_owned(),
            None => return Vec::new(),
        },
        Err(_) => user.to_owned(),
    };
    group_entries(files.group.as_deref().unwrap_or(""))
        .filter(|g| g.name != name && g.members.contains(&name.as_str()))
        .map(|g| g.gid)
        .collect()
}

/// `supplemental_groups` as gids; a negative or too large one is refused.
pub fn supplemental(groups: &[i64], field: &str) -> Result<Vec<u32>, SpecError> {
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            u32::try_from(*g).map_err(|_| SpecError::invalid(format!("{field}[{i}]"), format!("{g} is not a group id")))
        })
        .collect()
}

/// Sorted union (containerd's `mergeGids`).
pub fn merge(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut v: Vec<u32> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}
