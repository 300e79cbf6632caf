//! An image's configuration turned into a container's config.json, as the
//! OCI image spec's conversion rules say: `Entrypoint` + `Cmd` become
//! `process.args`, `Env` `process.env`, `WorkingDir` `process.cwd`, `User`
//! (a name or number, with an optional group) is resolved through the
//! image's `/etc/passwd` and `/etc/group`, the platform fields, `Labels`,
//! `StopSignal` and `ExposedPorts` become annotations, and each of `Volumes`
//! becomes a mount the caller provides.
//!
//! Pure: the caller reads the image's passwd and group files (from inside
//! the mounted rootfs) and writes the result.

use std::collections::BTreeMap;

use oci_spec::image::ImageConfiguration;
use serde_json::{json, Value};

/// The PATH a container gets when its image sets none (containerd's and
/// Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's and containerd's default capabilities for a container made from
/// an image (runc's `spec` template keeps only three, too few for images
/// whose programs chown or bind as root).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("image config User {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("the image has neither Entrypoint nor Cmd: give the command to run")]
    NoCommand,
    #[error("config.json template: {0}")]
    Template(String),
}

/// What the caller asks for on top of the image's configuration.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replaces the image's `Cmd` (the arguments after the entrypoint).
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's `Entrypoint` (and drops its `Cmd` unless `cmd` is given).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries that replace the image's variables of the same name.
    pub env: Vec<String>,
    /// A `User` in the image's syntax, instead of the image's.
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub terminal: bool,
    pub hostname: Option<String>,
}

/// The resolved `process.user`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolve an image `User` (`user`, `uid`, `user:group`, `uid:gid`, ...)
/// through the image's passwd and group files. An empty user is root.
pub fn resolve_user(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<User, Error> {
    let err = |reason: String| Error::User { user: spec.to_owned(), reason };
    if spec.is_empty() {
        return Ok(User::default());
    }
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || grp == Some("") {
        return Err(err("empty user or group".into()));
    }
    let passwd_entry = |pred: &dyn Fn(&[&str]) -> bool| -> Option<(String, u32, u32)> {
        passwd?.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || !pred(&f) {
                return None;
            }
            Some((f[0].to_owned(), f[2].parse().ok()?, f[3].parse().ok()?))
        })
    };
    let (uid, mut gid, name, by_name) = match user.parse::<u32>() {
        // A number is taken as is; its passwd entry, if any, gives the group.
        Ok(uid) => match passwd_entry(&|f| f[2].parse::<u32>() == Ok(uid)) {
            Some((name, _, gid)) => (uid, gid, Some(name), false),
            None => (uid, 0, None, false),
        },
        Err(_) => match passwd_entry(&|f| f[0] == user) {
            Some((name, uid, gid)) => (uid, gid, Some(name), true),
            None => return Err(err(format!("no user {user:?} in the image's /etc/passwd"))),
        },
    };
    let groups: Vec<(String, u32, Vec<String>)> = group
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect());
            Some((f[0].to_owned(), f[2].parse().ok()?, members.unwrap_or_default()))
        })
        .collect();
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match groups.iter().find(|(n, _, _)| n == g) {
                Some((_, gid, _)) => *gid,
                None => return Err(err(format!("no group {g:?} in the image's /etc/group"))),
            },
        };
    }
    // Supplementary groups only for a user named without a group, as the conversion rules say.
    let mut additional_gids = Vec::new();
    if by_name && grp.is_none() {
        if let Some(name) = &name {
            for (_, g, members) in &groups {
                if members.iter().any(|m| m == name) && *g != gid && !additional_gids.contains(g) {
                    additional_gids.push(*g);
                }
            }
        }
    }
    Ok(User { uid, gid, additional_gids })
}

/// The container's arguments: entrypoint then cmd, each from the overrides
/// or the image (a new entrypoint drops the image's cmd, as Docker does).
pub fn args(image: &ImageConfiguration, ov: &Overrides) -> Result<Vec<String>, Error> {
    let cfg = image.config().as_ref();
    let entrypoint = match &ov.entrypoint {
        Some(e) => e.clone(),
        None => cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    let cmd = match (&ov.cmd, &ov.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cfg.and_then(|c| c.cmd().clone()).unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(args)
}

/// The container's environment: the image's, a default PATH if it has none,
/// `TERM` with a terminal, then the overrides by name.
pub fn env(image: &ImageConfiguration, ov: &Overrides) -> Vec<String> {
    let mut env: Vec<String> = image.config().as_ref().and_then(|c| c.env().clone()).unwrap_or_default();
    let name = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    let has = |env: &[String], key: &str| env.iter().any(|e| name(e) == key);
    if !has(&env, "PATH") {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    if ov.terminal && !has(&env, "TERM") {
        env.push("TERM=xterm".to_owned());
    }
    for e in &ov.env {
        let key = name(e);
        env.retain(|x| name(x) != key);
        env.push(e.clone());
    }
    env
}

/// The annotations the conversion rules derive from the image configuration.
pub fn annotations(image: &ImageConfiguration) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let key = |k: &str| format!("org.opencontainers.image.{k}");
    a.insert(key("os"), image.os().to_string());
    a.insert(key("architecture"), image.architecture().to_string());
    if let Some(v) = image.variant() {
        a.insert(key("variant"), v.clone());
    }
    if let Some(v) = image.os_version() {
        a.insert(key("os.version"), v.clone());
    }
    if let Some(v) = image.os_features() {
        a.insert(key("os.features"), v.join(","));
    }
    if let Some(v) = image.author() {
        a.insert(key("author"), v.clone());
    }
    if let Some(v) = image.created() {
        a.insert(key("created"), v.clone());
    }
    if let Some(cfg) = image.config() {
        if let Some(s) = cfg.stop_signal() {
            a.insert(key("stopSignal"), s.clone());
        }
        if let Some(ports) = cfg.exposed_ports() {
            let mut ports = ports.clone();
            ports.sort();
            a.insert(key("exposedPorts"), ports.join(","));
        }
        // Labels win over every derived annotation.
        if let Some(labels) = cfg.labels() {
            a.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    a
}

/// The image's `Volumes`, sorted, each an absolute path.
pub fn volumes(image: &ImageConfiguration) -> Vec<String> {
    let mut v: Vec<String> = image.config().as_ref().and_then(|c| c.volumes().clone()).unwrap_or_default();
    v.retain(|p| p.starts_with('/'));
    v.sort();
    v.dedup();
    v
}

/// Fill `template` (a config.json, runc's `spec` default) from the image:
/// process args, env, cwd, user, terminal; a writable root (the snapshot's
/// upper layer takes the writes); the default capabilities of images; the
/// annotations; a bind mount for each volume from `volume_sources`
/// (destination → host directory).
pub fn config_json(
    mut template: Value,
    image: &ImageConfiguration,
    ov: &Overrides,
    user: &User,
    volume_sources: &[(String, std::path::PathBuf)],
) -> Result<Value, Error> {
    let args = args(image, ov)?;
    let cwd = ov
        .workdir
        .clone()
        .or_else(|| image.config().as_ref().and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let obj = template.as_object_mut().ok_or_else(|| Error::Template("not an object".into()))?;
    let process = obj
        .entry("process")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Error::Template("process is not an object".into()))?;
    process.insert("terminal".into(), json!(ov.terminal));
    process.insert("args".into(), json!(args));
    process.insert("env".into(), json!(env(image, ov)));
    process.insert("cwd".into(), json!(cwd));
    let mut u = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        u["additionalGids"] = json!(user.additional_gids);
    }
    process.insert("user".into(), u);
    process
        .insert("capabilities".into(), json!({"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS}));
    obj.insert("root".into(), json!({"path": "rootfs", "readonly": false}));
    if let Some(h) = &ov.hostname {
        obj.insert("hostname".into(), json!(h));
    }
    let ann = obj.entry("annotations").or_insert_with(|| json!({}));
    if let Some(map) = ann.as_object_mut() {
        for (k, v) in annotations(image) {
            map.entry(k).or_insert(json!(v));
        }
    }
    if let Some(mounts) = obj.entry("mounts").or_insert_with(|| json!([])).as_array_mut() {
        for (dest, src) in volume_sources {
            mounts.push(json!({
                "destination": dest, "type": "bind", "source": src,
                "options": ["rbind", "rprivate", "nosuid", "nodev"],
            }));
        }
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:34:\nbob:x:1000:\nstaff:x:50:bob,alice\naudio:x:29:bob\n";

    fn image(cfg: Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": cfg,
        }))
        .unwrap()
    }

    #[test]
    fn users() {
        let r = |u| resolve_user(u, Some(PASSWD), Some(GROUP));
        assert_eq!(r("").unwrap(), User::default());
        assert_eq!(r("www").unwrap(), User { uid: 33, gid: 34, additional_gids: vec![] });
        assert_eq!(r("bob").unwrap(), User { uid: 1000, gid: 1000, additional_gids: vec![50, 29] });
        assert_eq!(r("bob:staff").unwrap(), User { uid: 1000, gid: 50, additional_gids: vec![] });
        assert_eq!(r("1000").unwrap(), User { uid: 1000, gid: 1000, additional_gids: vec![] });
        assert_eq!(r("4242").unwrap(), User { uid: 4242, gid: 0, additional_gids: vec![] });
        assert_eq!(r("4242:77").unwrap(), User { uid: 4242, gid: 77, additional_gids: vec![] });
        assert_eq!(r("33:bob").unwrap(), User { uid: 33, gid: 1000, additional_gids: vec![] });
        let e = r("nobody").unwrap_err().to_string();
        assert!(e.contains("\"nobody\"") && e.contains("/etc/passwd"), "{e}");
        let e = r("bob:wheel").unwrap_err().to_string();
        assert!(e.contains("wheel") && e.contains("/etc/group"), "{e}");
        assert!(r("bob:").is_err());
        assert!(resolve_user("bob", None, None).is_err());
        assert_eq!(resolve_user("7:8", None, None).unwrap(), User { uid: 7, gid: 8, additional_gids: vec![] });
    }

    #[test]
    fn args_follow_docker() {
        let img = image(json!({"Entrypoint": ["/bin/ep"], "Cmd": ["a", "b"]}));
        let ov = |cmd: Option<&[&str]>, ep: Option<&[&str]>| Overrides {
            cmd: cmd.map(|c| c.iter().map(|s| s.to_string()).collect()),
            entrypoint: ep.map(|c| c.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(args(&img, &ov(None, None)).unwrap(), ["/bin/ep", "a", "b"]);
        assert_eq!(args(&img, &ov(Some(&["x"]), None)).unwrap(), ["/bin/ep", "x"]);
        assert_eq!(args(&img, &ov(None, Some(&["/bin/sh"]))).unwrap(), ["/bin/sh"]);
        assert_eq!(args(&img, &ov(Some(&["-c", "id"]), Some(&["/bin/sh"]))).unwrap(), ["/bin/sh", "-c", "id"]);
        assert_eq!(args(&image(json!({})), &ov(None, None)), Err(Error::NoCommand));
    }

    #[test]
    fn env_and_annotations() {
        let img = image(json!({
            "Env": ["A=1", "B=2"], "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
            "StopSignal": "SIGQUIT", "Labels": {"org.opencontainers.image.os": "mine", "x": "y"},
            "Volumes": {"/data": {}, "/cache": {}, "relative": {}},
        }));
        let ov = Overrides { env: vec!["B=3".into(), "C=4".into()], terminal: true, ..Default::default() };
        assert_eq!(env(&img, &ov), [DEFAULT_PATH, "A=1", "TERM=xterm", "B=3", "C=4"]);
        let a = annotations(&img);
        assert_eq!(a["org.opencontainers.image.exposedPorts"], "443/tcp,80/tcp");
        assert_eq!(a["org.opencontainers.image.stopSignal"], "SIGQUIT");
        assert_eq!(a["org.opencontainers.image.os"], "mine");
        assert_eq!(a["org.opencontainers.image.architecture"], "amd64");
        assert_eq!(a["x"], "y");
        assert_eq!(volumes(&img), ["/cache", "/data"]);
    }

    #[test]
    fn config_from_template() {
        let img = image(json!({"Cmd": ["sh"], "WorkingDir": "/srv", "Env": ["PATH=/bin"]}));
        let t = json!({"ociVersion": "1.0.2", "process": {"terminal": true, "args": ["sh"]}, "root": {"path": "rootfs", "readonly": true}, "mounts": []});
        let user = User { uid: 5, gid: 6, additional_gids: vec![7] };
        let vols = vec![("/data".to_owned(), std::path::PathBuf::from("/var/lib/roci/volumes/x"))];
        let c = config_json(t, &img, &Overrides::default(), &user, &vols).unwrap();
        assert_eq!(c["process"]["args"], json!(["sh"]));
        assert_eq!(c["process"]["terminal"], json!(false));
        assert_eq!(c["process"]["cwd"], json!("/srv"));
        assert_eq!(c["process"]["env"], json!(["PATH=/bin"]));
        assert_eq!(c["process"]["user"], json!({"uid": 5, "gid": 6, "additionalGids": [7]}));
        assert_eq!(c["root"]["readonly"], json!(false));
        assert_eq!(c["mounts"][0]["destination"], json!("/data"));
        assert_eq!(c["annotations"]["org.opencontainers.image.os"], json!("linux"));
    }
}
