//! The AppArmor profile a `RuntimeDefault` request means on an AppArmor host.
//!
//! containerd generates `cri-containerd.apparmor.d` and loads it when it starts; roci-cri does
//! the same with a profile of its own, [`DEFAULT_PROFILE`] (text: [`profile_text`]), before it
//! serves. The configuration's `apparmor_default_profile` decides ([`plan`]):
//!
//! - [`DEFAULT_PROFILE`] (the default): roci-cri loads its profile with `apparmor_parser -Kr`
//!   (found in `PATH`, else `/sbin`, `/usr/sbin`), unless the kernel already holds the same
//!   policy: the profile is listed in `<securityfs>/apparmor/profiles` and its `raw_data` (the
//!   policy blob as loaded, which the kernel keeps with `apparmor.export_binary`) equals what
//!   `apparmor_parser -S` compiles from the text now. Anything else (another version of the
//!   profile, a kernel that keeps no blob) is replaced, which moves running containers to the
//!   new version, as a reload by containerd does.
//! - another name: that profile, which must already be loaded (roci-cri never loads it).
//! - `""`: none; `RuntimeDefault` is then refused on an AppArmor host, naming the field.
//!
//! On a host without AppArmor nothing is loaded and nothing is checked. A host with AppArmor
//! but without securityfs mounted on `/sys/kernel/security`, or without `apparmor_parser`, stops
//! the daemon at startup with the missing piece named (unless the configuration names a loaded
//! profile or none): roci-cri does not mount securityfs on the host itself.
//!
//! The parser is a short-lived child the daemon waits for before it serves; it is no container
//! and the daemon is still never a container's parent. Profiles are never unloaded: containers
//! outlive the daemon, and so does the profile confining them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// roci-cri's own default profile, loaded at startup on an AppArmor host.
pub const DEFAULT_PROFILE: &str = "roci-cri-default";

/// Where securityfs is mounted on a host that has it.
pub const SECURITYFS: &str = "/sys/kernel/security";

/// Where `apparmor_parser` is looked for after `PATH` (Debian installs it in `/sbin`, which a
/// service's `PATH` may lack).
const PARSER_DIRS: [&str; 2] = ["/sbin", "/usr/sbin"];
const PARSER: &str = "apparmor_parser";

#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    #[error(
        "AppArmor is enabled but {path} does not exist: securityfs is not mounted on {SECURITYFS} \
         (mount -t securityfs securityfs {SECURITYFS}), or set apparmor_default_profile = \"\""
    )]
    NoSecurityfs { path: PathBuf },
    #[error(
        "AppArmor is enabled and roci-cri loads its default profile {DEFAULT_PROFILE} with {PARSER}, which \
         is neither in PATH nor in {dirs}: install it (Debian: apparmor), or name a loaded profile in \
         apparmor_default_profile (\"\" for none)",
        dirs = PARSER_DIRS.join(" or ")
    )]
    NoParser,
    #[error("apparmor_default_profile: the AppArmor profile {0:?} is not loaded")]
    NotLoaded(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{parser} {args} (profile {DEFAULT_PROFILE}): {reason}")]
    Parser { parser: PathBuf, args: &'static str, reason: String },
}

/// What the daemon does at startup, from whether AppArmor is enabled and the configured name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No AppArmor on this host: nothing to load, no default profile.
    Disabled,
    /// AppArmor is on and no default profile is wanted.
    NoDefault,
    /// Load (or keep) roci-cri's own profile.
    LoadOwn,
    /// A profile loaded by someone else; checked, never loaded.
    Existing(String),
}

pub fn plan(enabled: bool, configured: &str) -> Plan {
    match configured {
        _ if !enabled => Plan::Disabled,
        "" => Plan::NoDefault,
        DEFAULT_PROFILE => Plan::LoadOwn,
        other => Plan::Existing(other.to_owned()),
    }
}

/// Make sure the configured default profile is in the kernel (see the module docs); the name
/// `RuntimeDefault` means from now on, or `None`.
pub fn ensure_default(enabled: bool, configured: &str) -> Result<Option<String>, AppArmorError> {
    let securityfs = Path::new(SECURITYFS).join("apparmor");
    match plan(enabled, configured) {
        Plan::Disabled => {
            tracing::debug!("AppArmor is not enabled on this host: no default profile");
            Ok(None)
        }
        Plan::NoDefault => {
            tracing::info!("apparmor_default_profile is empty: RuntimeDefault AppArmor profiles are refused");
            Ok(None)
        }
        Plan::Existing(name) => {
            if is_loaded(&loaded_profiles(&securityfs)?, &name) {
                tracing::info!(profile = name, "the configured default AppArmor profile is loaded");
                Ok(Some(name))
            } else {
                Err(AppArmorError::NotLoaded(name))
            }
        }
        Plan::LoadOwn => {
            let listing = loaded_profiles(&securityfs)?;
            let parser = find_parser(std::env::var_os("PATH").as_deref()).ok_or(AppArmorError::NoParser)?;
            let text = profile_text(DEFAULT_PROFILE, daemon_label().as_deref());
            if is_loaded(&listing, DEFAULT_PROFILE) {
                let compiled = run_parser(&parser, "-S", &text)?;
                if loaded_blob(&securityfs, DEFAULT_PROFILE).is_some_and(|blob| blob == compiled) {
                    tracing::info!(profile = DEFAULT_PROFILE, "the default AppArmor profile is loaded already");
                    return Ok(Some(DEFAULT_PROFILE.to_owned()));
                }
            }
            run_parser(&parser, "-Kr", &text)?;
            if !is_loaded(&loaded_profiles(&securityfs)?, DEFAULT_PROFILE) {
                return Err(AppArmorError::Parser {
                    parser,
                    args: "-Kr",
                    reason: format!("succeeded, but {} does not list the profile", securityfs.join("profiles").display()),
                });
            }
            tracing::info!(profile = DEFAULT_PROFILE, parser = %parser.display(), "loaded the default AppArmor profile");
            Ok(Some(DEFAULT_PROFILE.to_owned()))
        }
    }
}

/// The kernel's list of loaded profiles (`<securityfs>/apparmor/profiles`).
pub fn loaded_profiles(securityfs: &Path) -> Result<String, AppArmorError> {
    let path = securityfs.join("profiles");
    std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            AppArmorError::NoSecurityfs { path: securityfs.to_owned() }
        } else {
            AppArmorError::Io { op: "read", path, source }
        }
    })
}

/// Whether the listing of [`loaded_profiles`] (`name (mode)` a line) holds `name`.
pub fn is_loaded(listing: &str, name: &str) -> bool {
    listing.lines().any(|l| l.strip_suffix(')').and_then(|l| l.rsplit_once(" (")).is_some_and(|(n, _)| n == name))
}

/// The policy blob the kernel holds for `name` (`policy/profiles/<dir>/raw_data`, the directory
/// whose `name` file is `name`), if it keeps one.
fn loaded_blob(securityfs: &Path, name: &str) -> Option<Vec<u8>> {
    let dirs = std::fs::read_dir(securityfs.join("policy/profiles")).ok()?;
    let dir =
        dirs.flatten().map(|e| e.path()).find(|d| std::fs::read_to_string(d.join("name")).is_ok_and(|n| n.trim_end() == name))?;
    std::fs::read(dir.join("raw_data")).ok()
}

/// `apparmor_parser`: the first in `path_var`, else in [`PARSER_DIRS`].
pub fn find_parser(path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let in_path = path_var.map(|p| std::env::split_paths(p).collect::<Vec<_>>()).unwrap_or_default();
    in_path.into_iter().chain(PARSER_DIRS.iter().map(PathBuf::from)).map(|d| d.join(PARSER)).find(|p| p.is_file())
}

/// Run the parser with `args`, the profile text on its standard input; its standard output.
fn run_parser(parser: &Path, args: &'static str, text: &str) -> Result<Vec<u8>, AppArmorError> {
    let fail = |reason: String| AppArmorError::Parser { parser: parser.to_owned(), args, reason };
    let mut child = Command::new(parser)
        .arg(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("start: {e}")))?;
    // The text is small (a few KiB, under a pipe's buffer): written whole before the output is read.
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(|e| fail(format!("wait: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    if let Some(Err(e)) = written {
        return Err(fail(format!("write the profile to its standard input: {e}")));
    }
    tracing::debug!(parser = %parser.display(), args, "ran the AppArmor parser");
    Ok(out.stdout)
}

/// The daemon's own AppArmor label when it runs confined (`/proc/self/attr/current` other than
/// `unconfined`): its monitors share it, and they must be able to signal the containers.
fn daemon_label() -> Option<String> {
    let current =
        ["/proc/self/attr/apparmor/current", "/proc/self/attr/current"].iter().find_map(|p| std::fs::read_to_string(p).ok())?;
    label_name(&current)
}

/// The profile name of a task's label (`name (mode)`), `None` for `unconfined`.
fn label_name(current: &str) -> Option<String> {
    let current = current.trim_end_matches(['\n', '\0']);
    let name = current.strip_suffix(')').and_then(|c| c.rsplit_once(" (")).map_or(current, |(n, _)| n);
    (!name.is_empty() && name != "unconfined").then(|| name.to_owned())
}

/// The text of roci-cri's default profile, named `name`; `daemon` is the daemon's own profile
/// when it runs confined.
///
/// Everything the container's namespaces, capabilities and seccomp filter allow is allowed,
/// except what would reach past the container into the host's kernel: mounts (which could
/// uncover masked paths even with CAP_SYS_ADMIN added), writes to the host-wide files of /proc
/// and /sys, the kernel's firmware tables, memory and security interfaces. Signals and ptrace
/// stay between processes of this profile, plus signals from the unconfined host (and the
/// daemon's monitors). The profile is self-contained (no `#include` of the host's abstractions
/// or tunables), so its compiled form is the same on every host with the same kernel features.
pub fn profile_text(name: &str, daemon: Option<&str>) -> String {
    let daemon_signals = daemon.map(|d| format!("  signal (receive) peer={d},\n")).unwrap_or_default();
    format!(
        r#"# roci-cri's default AppArmor profile: what a pod or container that names no profile runs
# under (RuntimeDefault). Loaded by roci-cri at startup; see cri-shim/src/apparmor.rs.
profile {name} flags=(attach_disconnected,mediate_deleted) {{
  network,
  capability,
  file,
  umount,

  # Signals from the host's unconfined processes (roci-cri's monitors, an administrator) and
  # among this profile's processes; ptrace and its /proc reads only among them.
  signal (receive) peer=unconfined,
{daemon_signals}  signal (send,receive) peer={name},
  ptrace (trace,read,tracedby,readby) peer={name},

  deny mount,

  # /proc: no write to its top-level files; below it, writes only in /proc/<pid>/ and
  # /proc/sys/kernel/shm* (the IPC namespace's own limits).
  deny /proc/* w,
  deny /proc/{{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9]*}}/** w,
  deny /proc/sys/[^k]** w,
  deny /proc/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny /proc/sysrq-trigger rwklx,
  deny /proc/kcore rwklx,

  # /sys: writes only below /sys/fs/cgroup; firmware, power capping and securityfs not at all.
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_follows_the_host_and_the_configuration() {
        assert_eq!(plan(false, DEFAULT_PROFILE), Plan::Disabled);
        assert_eq!(plan(false, "other"), Plan::Disabled);
        assert_eq!(plan(false, ""), Plan::Disabled);
        assert_eq!(plan(true, ""), Plan::NoDefault);
        assert_eq!(plan(true, DEFAULT_PROFILE), Plan::LoadOwn);
        assert_eq!(plan(true, "site-default"), Plan::Existing("site-default".into()));
    }

    #[test]
    fn loaded_profiles_are_found_by_their_whole_name() {
        let listing = "roci-cri-default (enforce)\n/usr/bin/man (complain)\nwith space (x) (enforce)\n";
        assert!(is_loaded(listing, "roci-cri-default"));
        assert!(is_loaded(listing, "/usr/bin/man"));
        assert!(is_loaded(listing, "with space (x)"));
        assert!(!is_loaded(listing, "roci-cri"));
        assert!(!is_loaded(listing, "roci-cri-default (enforce)"));
        assert!(!is_loaded("", "roci-cri-default"));
    }

    #[test]
    fn labels_name_their_profile() {
        assert_eq!(label_name("unconfined\n"), None);
        assert_eq!(label_name("roci-cri-default (enforce)\n"), Some("roci-cri-default".into()));
        assert_eq!(label_name("kubelet (complain)\0"), Some("kubelet".into()));
        assert_eq!(label_name(""), None);
    }

    #[test]
    fn the_profile_names_itself_and_the_daemon() {
        let text = profile_text("p1", None);
        assert!(text.contains("\nprofile p1 flags=(attach_disconnected,mediate_deleted) {\n"), "{text}");
        assert!(text.contains("signal (send,receive) peer=p1,"), "{text}");
        assert!(text.contains("ptrace (trace,read,tracedby,readby) peer=p1,"), "{text}");
        assert!(text.contains("deny mount,"), "{text}");
        assert!(!text.contains("peer=confined-daemon"), "{text}");
        let text = profile_text("p1", Some("confined-daemon"));
        assert!(text.contains("signal (receive) peer=confined-daemon,"), "{text}");
        // Braces of the glob alternations are the profile's, not format!'s.
        assert!(text.contains("/proc/sys/kernel/{?,??,[^s][^h][^m]**} w,"), "{text}");
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn the_parser_is_found_in_path_then_in_sbin() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(PARSER), "").expect("write a fake parser");
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).expect("PATH");
        assert_eq!(find_parser(Some(&path)), Some(dir.path().join(PARSER)));
        let fallback = PARSER_DIRS.iter().map(|d| Path::new(d).join(PARSER)).find(|p| p.is_file());
        assert_eq!(find_parser(Some(std::ffi::OsStr::new("/nonexistent"))), fallback);
        assert_eq!(find_parser(None), fallback);
    }

    /// The text compiles (`apparmor_parser -Q`: no kernel needed), where the parser is installed.
    #[test]
    fn the_profile_compiles() {
        let Some(parser) = find_parser(std::env::var_os("PATH").as_deref()) else {
            eprintln!("skipped: no {PARSER} on this host (Debian: apparmor)");
            return;
        };
        for daemon in [None, Some("confined-daemon")] {
            let text = profile_text(DEFAULT_PROFILE, daemon);
            // -Q: compile only; -K: no cache.
            if let Err(e) = run_parser(&parser, "-QK", &text) {
                panic!("{e}\n{text}");
            }
        }
    }
}
