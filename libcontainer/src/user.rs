//! The container process's user: uid, gid, supplementary groups, and the
//! HOME that goes with it.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

#[derive(Debug, thiserror::Error)]
#[error("{op} {id}: {source}")]
pub struct Error {
    pub op: &'static str,
    pub id: String,
    pub source: nix::Error,
}

/// Switch to `uid`/`gid` with `groups` as supplementary groups.
pub fn switch(uid: u32, gid: u32, groups: &[u32]) -> Result<(), Error> {
    let gids: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    tracing::debug!(uid, gid, ?groups, "switch user");
    match setgroups(&gids) {
        Ok(()) => {}
        // A rootless user namespace has setgroups(2) disabled: with no
        // supplementary groups asked for, there is nothing to set.
        Err(nix::Error::EPERM) if groups.is_empty() && setgroups_denied() => {}
        Err(source) => return Err(Error { op: "setgroups", id: format!("{groups:?}"), source }),
    }
    setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid)).map_err(|source| Error {
        op: "setgid",
        id: gid.to_string(),
        source,
    })?;
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid)).map_err(|source| Error {
        op: "setuid",
        id: uid.to_string(),
        source,
    })?;
    Ok(())
}

fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// The home directory of `uid` in a passwd file's content, if listed.
pub fn home_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_owned())
    })
}

/// The name of `uid` in a passwd file's content, if listed.
pub fn name_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_owned())
    })
}

/// `HOME` for the container's process: from its `/etc/passwd`, else `/`.
pub fn home(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| home_in_passwd(&p, uid))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_home() {
        let p = "root:x:0:0:root:/root:/bin/sh\nbad line\nuser:x:1000:1000::/home/user:/bin/sh\n";
        assert_eq!(home_in_passwd(p, 0).as_deref(), Some("/root"));
        assert_eq!(home_in_passwd(p, 1000).as_deref(), Some("/home/user"));
        assert_eq!(home_in_passwd(p, 5), None);
        assert_eq!(name_in_passwd(p, 1000).as_deref(), Some("user"));
        assert_eq!(name_in_passwd(p, 5), None);
    }
}
