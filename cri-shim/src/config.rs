//! roci-cri's configuration: a TOML file (default `/etc/roci/cri.toml`), then the command line's
//! flags over it. Every key is documented in `cri-shim/cri.toml.example`; an unknown key, a key of
//! the wrong type or an unsupported value is an error that names the key, never silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file read when `--config` is not given. Its absence is not an error (the defaults apply);
/// the absence of a file named with `--config` is.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/roci/cri.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse the configuration file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("configuration: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// How pods' and containers' cgroups are managed. Only cgroupfs is in this build: `systemd` is
/// refused when the file is read, not accepted and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
}

/// The log levels `log_level` and `--log-level` take, as tracing's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> tracing::Level {
        match level {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// The CNI network configuration and plugin directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cni {
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
}

impl Default for Cni {
    fn default() -> Cni {
        Cni { conf_dir: "/etc/cni/net.d".into(), bin_dir: "/usr/lib/cni".into() }
    }
}

/// The whole configuration, after the file and the flags. Serialised as JSON into `Status`'s
/// verbose info, so that an operator sees what the running daemon uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub socket: PathBuf,
    /// Persistent state; images in `<root>/images` (see [`crate::images`]).
    pub root: PathBuf,
    pub state: PathBuf,
    pub cgroup_driver: CgroupDriver,
    /// The pods' infra image; ImageStatus and ListImages report it pinned.
    pub pause_image: String,
    /// libimage's registries.json (mirrors, insecure hosts, credentials) for PullImage, read at
    /// start; a missing file is an empty configuration.
    pub registries_config: PathBuf,
    pub log_level: LogLevel,
    pub stream_server_address: String,
    /// The `roci` binary that creates containers (through `roci monitor`): a bare name is looked
    /// up beside roci-cri's own executable, then in `PATH` ([`Config::runtime`]).
    pub runtime_path: PathBuf,
    /// Localhost seccomp profiles (`localhost_ref`) must be files under this directory
    /// (kubelet's `--seccomp-default` profiles live in `<kubelet root>/seccomp`).
    pub seccomp_profile_root: PathBuf,
    /// containerd's `restrict_oom_score_adj`: no pod or container gets an `oom_score_adj` below
    /// the daemon's own (for daemons that may not lower it: without CAP_SYS_RESOURCE, in a user
    /// namespace).
    pub restrict_oom_score_adj: bool,
    /// On an AppArmor host, the profile a `RuntimeDefault` AppArmor request means:
    /// [`crate::apparmor::DEFAULT_PROFILE`] (roci-cri loads it at startup), another profile that
    /// must be loaded already, or empty for none (RuntimeDefault is then refused). Ignored where
    /// AppArmor is off (see [`crate::apparmor`]).
    pub apparmor_default_profile: String,
    pub cni: Cni,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            socket: "/run/roci/roci-cri.sock".into(),
            root: "/var/lib/roci/cri".into(),
            state: "/run/roci/cri".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            pause_image: "registry.k8s.io/pause:3.10".into(),
            registries_config: "/etc/roci/registries.json".into(),
            log_level: LogLevel::Info,
            stream_server_address: "127.0.0.1:0".into(),
            runtime_path: "roci".into(),
            seccomp_profile_root: "/var/lib/kubelet/seccomp".into(),
            restrict_oom_score_adj: false,
            apparmor_default_profile: crate::apparmor::DEFAULT_PROFILE.into(),
            cni: Cni::default(),
        }
    }
}

/// Values from the command line; each one given replaces the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dir: Option<PathBuf>,
    pub pause_image: Option<String>,
    pub registries_config: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    pub cgroup_driver: Option<CgroupDriver>,
    pub stream_server_address: Option<String>,
    pub runtime_path: Option<PathBuf>,
    pub seccomp_profile_root: Option<PathBuf>,
    pub restrict_oom_score_adj: Option<bool>,
    pub apparmor_default_profile: Option<String>,
}

impl Config {
    /// Read `file` (or [`DEFAULT_CONFIG_FILE`] when it exists and `file` is `None`), apply the
    /// overrides, and check the result.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => Config::from_file(Path::new(DEFAULT_CONFIG_FILE))?,
            None => Config::default(),
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::parse(&text, path)
    }

    /// Parse the TOML text of the file `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
    }

    fn apply(&mut self, o: Overrides) {
        let Overrides {
            socket,
            root,
            state,
            cni_conf_dir,
            cni_bin_dir,
            pause_image,
            registries_config,
            log_level,
            cgroup_driver,
            stream_server_address,
            runtime_path,
            seccomp_profile_root,
            restrict_oom_score_adj,
            apparmor_default_profile,
        } = o;
        replace(&mut self.socket, socket);
        replace(&mut self.root, root);
        replace(&mut self.state, state);
        replace(&mut self.cni.conf_dir, cni_conf_dir);
        replace(&mut self.cni.bin_dir, cni_bin_dir);
        replace(&mut self.pause_image, pause_image);
        replace(&mut self.registries_config, registries_config);
        replace(&mut self.log_level, log_level);
        replace(&mut self.cgroup_driver, cgroup_driver);
        replace(&mut self.stream_server_address, stream_server_address);
        replace(&mut self.runtime_path, runtime_path);
        replace(&mut self.seccomp_profile_root, seccomp_profile_root);
        replace(&mut self.restrict_oom_score_adj, restrict_oom_score_adj);
        replace(&mut self.apparmor_default_profile, apparmor_default_profile);
    }

    /// The `roci` binary to run: `runtime_path` when it names a path; a bare name beside this
    /// executable when it is there (a build or an install puts both in one directory), else
    /// found in `PATH`; else the bare name (running it then fails with the name in the error).
    pub fn runtime(&self) -> PathBuf {
        let name = &self.runtime_path;
        if name.components().count() != 1 || name.is_absolute() {
            return name.clone();
        }
        let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(name)));
        let in_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name));
        beside.into_iter().chain(in_path).find(|p| p.is_file()).unwrap_or_else(|| name.clone())
    }

    /// Paths must be absolute (the daemon's working directory is no anchor), strings non-empty.
    fn validate(&self) -> Result<(), ConfigError> {
        let paths: [(&'static str, &Path); 7] = [
            ("seccomp_profile_root", &self.seccomp_profile_root),
            ("socket", &self.socket),
            ("root", &self.root),
            ("state", &self.state),
            ("registries_config", &self.registries_config),
            ("cni.conf_dir", &self.cni.conf_dir),
            ("cni.bin_dir", &self.cni.bin_dir),
        ];
        for (key, path) in paths {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid { key, reason: format!("{} is not an absolute path", path.display()) });
            }
        }
        if self.runtime_path.as_os_str().is_empty()
            || (!self.runtime_path.is_absolute() && self.runtime_path.components().count() != 1)
        {
            return Err(ConfigError::Invalid {
                key: "runtime_path",
                reason: format!("{:?} is neither an absolute path nor a bare name", self.runtime_path),
            });
        }
        if self.pause_image.trim().is_empty() {
            return Err(ConfigError::Invalid { key: "pause_image", reason: "empty image reference".into() });
        }
        // The name is written into /proc/<pid>/attr/exec as `exec <name>`: one word.
        let profile = &self.apparmor_default_profile;
        if profile.chars().any(|c| c.is_whitespace() || c.is_control()) || profile == "unconfined" {
            return Err(ConfigError::Invalid {
                key: "apparmor_default_profile",
                reason: format!("{profile:?} is not the name of a profile (no spaces, not \"unconfined\")"),
            });
        }
        if self.stream_server_address.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "stream_server_address",
                reason: format!("{:?} is not an IP address and port", self.stream_server_address),
            });
        }
        Ok(())
    }
}

fn replace<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("cri.toml"))
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let example = include_str!("../cri.toml.example");
        let config = parse(example).expect("cri.toml.example");
        assert_eq!(config, Config::default());
        config.validate().expect("the defaults are valid");
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(
            r#"
socket = "/s/cri.sock"
root = "/r"
state = "/st"
cgroup_driver = "cgroupfs"
pause_image = "example.com/pause:1"
registries_config = "/etc/reg.json"
log_level = "debug"
stream_server_address = "[::1]:10010"
runtime_path = "/opt/roci"
seccomp_profile_root = "/k/seccomp"
restrict_oom_score_adj = true
apparmor_default_profile = "site-default"
[cni]
conf_dir = "/c/net.d"
bin_dir = "/c/bin"
"#,
        )
        .expect("parse");
        assert_eq!(
            config,
            Config {
                socket: "/s/cri.sock".into(),
                root: "/r".into(),
                state: "/st".into(),
                cgroup_driver: CgroupDriver::Cgroupfs,
                pause_image: "example.com/pause:1".into(),
                registries_config: "/etc/reg.json".into(),
                log_level: LogLevel::Debug,
                stream_server_address: "[::1]:10010".into(),
                runtime_path: "/opt/roci".into(),
                seccomp_profile_root: "/k/seccomp".into(),
                restrict_oom_score_adj: true,
                apparmor_default_profile: "site-default".into(),
                cni: Cni { conf_dir: "/c/net.d".into(), bin_dir: "/c/bin".into() },
            }
        );
        config.validate().expect("valid");
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config = parse("[cni]\nconf_dir = \"/x\"\n").expect("parse");
        assert_eq!(config.cni.conf_dir, Path::new("/x"));
        assert_eq!(config.cni.bin_dir, Cni::default().bin_dir);
        assert_eq!(config.root, Config::default().root);
    }

    #[test]
    fn unknown_keys_and_values_are_refused_by_name() {
        let e = parse("rot = \"/r\"\n").expect_err("a misspelt key").to_string();
        assert!(e.contains("cri.toml") && e.contains("rot"), "{e}");
        let e = parse("[cni]\nconfdir = \"/x\"\n").expect_err("a misspelt nested key").to_string();
        assert!(e.contains("confdir"), "{e}");
        let e = parse("cgroup_driver = \"systemd\"\n").expect_err("the systemd driver").to_string();
        assert!(e.contains("systemd") && e.contains("cgroupfs"), "{e}");
        let e = parse("log_level = 3\n").expect_err("a number for a level").to_string();
        assert!(e.contains("log_level"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("cri.toml");
        std::fs::write(&file, "root = \"/from-file\"\nstate = \"/state-from-file\"\nlog_level = \"warn\"\n").expect("write");
        let overrides = Overrides {
            root: Some("/from-flag".into()),
            cni_conf_dir: Some("/flag/net.d".into()),
            log_level: Some(LogLevel::Trace),
            ..Overrides::default()
        };
        let config = Config::load(Some(&file), overrides).expect("load");
        assert_eq!(config.root, Path::new("/from-flag"));
        assert_eq!(config.state, Path::new("/state-from-file"));
        assert_eq!(config.cni.conf_dir, Path::new("/flag/net.d"));
        assert_eq!(config.log_level, LogLevel::Trace);
    }

    #[test]
    fn a_named_file_must_exist_and_paths_must_be_absolute() {
        let e = Config::load(Some(Path::new("/nonexistent/cri.toml")), Overrides::default()).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/cri.toml"), "{e}");
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("cri.toml");
        std::fs::write(&file, "").expect("write");
        let e = Config::load(Some(&file), Overrides { state: Some("relative".into()), ..Overrides::default() })
            .expect_err("relative");
        assert_eq!(e.to_string(), "configuration: state: relative is not an absolute path");
        let e = Config::load(Some(&file), Overrides { stream_server_address: Some("localhost".into()), ..Overrides::default() })
            .expect_err("no port");
        assert!(e.to_string().starts_with("configuration: stream_server_address:"), "{e}");
        for bad in ["two words", "unconfined", "x\n"] {
            let o = Overrides { apparmor_default_profile: Some(bad.into()), ..Overrides::default() };
            let e = Config::load(Some(&file), o).expect_err(bad);
            assert!(e.to_string().starts_with("configuration: apparmor_default_profile:"), "{e}");
        }
        let none = Overrides { apparmor_default_profile: Some(String::new()), ..Overrides::default() };
        assert_eq!(Config::load(Some(&file), none).expect("empty: no default profile").apparmor_default_profile, "");
    }
}
