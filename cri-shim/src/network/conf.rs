//! The pod network's configuration: which CNI network configuration is in force, and whether
//! there is one at all (what `Status` reports as the NetworkReady condition).
//!
//! The pod network is the first file named `*.conf`, `*.conflist` or `*.json` in the configuration
//! directory, in byte order of the names (the order libcni's `ConfFiles` and containerd use). The
//! directory is read at each call: a configuration written after the daemon started (by a network
//! add-on's installer, typically) is picked up without a restart, and one removed is noticed.
//!
//! A `.conflist` is a network configuration list (`name`, `cniVersion`, `disableCheck`,
//! `plugins`); a `.conf` or `.json` is a single plugin's configuration, made into a list of one
//! (its `name` and `cniVersion` become the list's), as the CNI spec 1.0 asks of runtimes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The extensions of network configuration files.
const EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// The CNI spec versions whose configuration and result format this runtime knows. Older ones
/// (0.1.0, 0.2.0) have another result shape (`ip4`/`ip6`) and are refused.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, thiserror::Error)]
pub enum NetworkConfigError {
    #[error("read the CNI configuration directory {dir}: {source}")]
    ReadDir { dir: PathBuf, source: std::io::Error },
    #[error("no network config found in {dir}")]
    NoConfig { dir: PathBuf },
    #[error("read the CNI configuration {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse the CNI configuration {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A network configuration list, as the runtime executes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The file it was read from (for messages and `Status`).
    pub path: PathBuf,
    /// The network's `name`: given to every plugin, and the key of host-local's allocations.
    pub name: String,
    /// The CNI spec version every plugin of the list is called with.
    pub cni_version: String,
    /// `disableCheck`: CHECK is never run for this network.
    pub disable_check: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConfig>,
}

/// One plugin's configuration in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// `type`: the plugin's executable in the CNI bin directory.
    pub kind: String,
    /// The capabilities the plugin asks for (`capabilities` keys set to `true`): only these
    /// runtime arguments reach it, in `runtimeConfig`.
    pub capabilities: BTreeSet<String>,
    /// The object as written, `capabilities` included; the runtime derives what the plugin gets
    /// on stdin from it.
    pub config: Map<String, Value>,
}

impl NetworkConfig {
    /// The plugins' `type`s, in order.
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins.iter().map(|p| p.kind.as_str()).collect()
    }

    /// The list as a `.conflist` JSON object (what the result cache keeps, so that DEL runs the
    /// configuration ADD ran even when the file changed since).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins.iter().map(|p| Value::Object(p.config.clone())).collect::<Vec<_>>(),
        })
    }

    /// Read a list back from [`NetworkConfig::to_json`]'s output; `path` names where it came from.
    pub fn from_json(path: &Path, value: &Value) -> Result<NetworkConfig, NetworkConfigError> {
        parse_list(path, value)
    }
}

/// The pod network's configuration in `dir`, or why there is none usable.
pub fn load(dir: &Path) -> Result<NetworkConfig, NetworkConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| NetworkConfigError::ReadDir { dir: dir.into(), source })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| NetworkConfigError::ReadDir { dir: dir.into(), source })?;
        let path = entry.path();
        let wanted = path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e));
        // A directory named x.conf is not a configuration; a symlink to a file is.
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let path = files.into_iter().next().ok_or_else(|| NetworkConfigError::NoConfig { dir: dir.into() })?;
    let text = std::fs::read_to_string(&path).map_err(|source| NetworkConfigError::Read { path: path.clone(), source })?;
    parse(&path, &text)
}

/// Parse the text of the configuration file `path`: a list when it is named `*.conflist`, a
/// single plugin's configuration otherwise.
pub fn parse(path: &Path, text: &str) -> Result<NetworkConfig, NetworkConfigError> {
    let invalid = |reason: String| NetworkConfigError::Invalid { path: path.into(), reason };
    let value: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if path.extension().is_some_and(|e| e == "conflist") {
        return parse_list(path, &value);
    }
    let object = value.as_object().ok_or_else(|| invalid("not a JSON object".into()))?;
    let list = serde_json::json!({
        "cniVersion": object.get("cniVersion").cloned().unwrap_or(Value::Null),
        "name": object.get("name").cloned().unwrap_or(Value::Null),
        "plugins": [value.clone()],
    });
    parse_list(path, &list).map_err(|e| match e {
        // A single configuration's fields are its own, not a list's: name them so.
        NetworkConfigError::Invalid { path, reason } => {
            NetworkConfigError::Invalid { path, reason: reason.strip_prefix("plugins[0].").unwrap_or(&reason).to_string() }
        }
        other => other,
    })
}

fn parse_list(path: &Path, value: &Value) -> Result<NetworkConfig, NetworkConfigError> {
    let invalid = |reason: String| NetworkConfigError::Invalid { path: path.into(), reason };
    let object = value.as_object().ok_or_else(|| invalid("not a JSON object".into()))?;
    let name = match object.get("name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        Some(Value::String(n)) => {
            return Err(invalid(format!(
                "name: {n:?} must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
            )))
        }
        _ => return Err(invalid("name: missing or not a non-empty string".into())),
    };
    let cni_version = match object.get("cniVersion") {
        Some(Value::String(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => v.clone(),
        Some(Value::String(v)) => {
            return Err(invalid(format!("cniVersion: {v:?} is not supported (supported: {})", SUPPORTED_VERSIONS.join(", "))))
        }
        _ => return Err(invalid("cniVersion: missing or not a string".into())),
    };
    // The spec writes it as a string; libcni also takes a boolean.
    let disable_check = match object.get("disableCheck") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(other) => return Err(invalid(format!("disableCheck: {other} is neither true nor false"))),
    };
    let list = object
        .get("plugins")
        .and_then(|p| p.as_array())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("plugins: missing or not a non-empty list".into()))?;
    let plugins = list
        .iter()
        .enumerate()
        .map(|(i, plugin)| parse_plugin(plugin).map_err(|reason| invalid(format!("plugins[{i}].{reason}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkConfig { path: path.into(), name, cni_version, disable_check, plugins })
}

/// One plugin's object; the error is the field and what is wrong with it.
fn parse_plugin(plugin: &Value) -> Result<PluginConfig, String> {
    let config = plugin.as_object().ok_or("type: the plugin is not a JSON object")?;
    let kind = match config.get("type") {
        // The type names a file in the bin directory: no path may sneak in.
        Some(Value::String(t)) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => t.clone(),
        _ => return Err("type: missing or not a plugin file name".into()),
    };
    let capabilities = match config.get("capabilities") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Object(caps)) => {
            let mut wanted = BTreeSet::new();
            for (cap, on) in caps {
                match on {
                    Value::Bool(true) => {
                        wanted.insert(cap.clone());
                    }
                    Value::Bool(false) => {}
                    other => return Err(format!("capabilities.{cap}: {other} is not a boolean")),
                }
            }
            wanted
        }
        Some(other) => return Err(format!("capabilities: {other} is not an object")),
    };
    Ok(PluginConfig { kind, capabilities, config: config.clone() })
}

/// The spec's network name: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`. It is also part of host-local's
/// directory and of messages, so nothing else gets through.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: &str = r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}},
        {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}]}"#;

    #[test]
    fn an_empty_or_missing_directory_has_no_network() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(matches!(load(dir.path()), Err(NetworkConfigError::NoConfig { .. })));
        std::fs::write(dir.path().join("README"), "not a configuration").expect("write");
        std::fs::create_dir(dir.path().join("dir.conf")).expect("mkdir");
        assert!(matches!(load(dir.path()), Err(NetworkConfigError::NoConfig { .. })));
        assert!(matches!(load(&dir.path().join("absent")), Err(NetworkConfigError::ReadDir { .. })));
    }

    #[test]
    fn the_first_file_in_name_order_is_the_network() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("20-other.conf"), r#"{"cniVersion": "0.4.0", "name": "other", "type": "ptp"}"#)
            .expect("write");
        let other = load(dir.path()).expect("one .conf");
        assert_eq!((other.name.as_str(), other.plugin_types()), ("other", vec!["ptp"]));
        assert_eq!(other.cni_version, "0.4.0");
        std::fs::write(dir.path().join("10-pods.conflist"), BRIDGE).expect("write");
        let pods = load(dir.path()).expect("two files");
        assert_eq!(pods.path, dir.path().join("10-pods.conflist"));
        assert_eq!(pods.name, "pods");
        assert_eq!(pods.plugin_types(), ["bridge", "portmap"]);
        assert!(pods.plugins[0].capabilities.is_empty());
        assert_eq!(pods.plugins[1].capabilities, BTreeSet::from(["portMappings".to_string()]), "false is not asked for");
        assert!(!pods.disable_check);
    }

    #[test]
    fn a_list_survives_its_json_round_trip() {
        let path = Path::new("/etc/cni/net.d/10-pods.conflist");
        let pods = parse(path, BRIDGE).expect("parse");
        assert_eq!(NetworkConfig::from_json(path, &pods.to_json()).expect("back"), pods);
        let single =
            parse(Path::new("x.conf"), r#"{"cniVersion": "1.0.0", "name": "n", "type": "ptp", "mtu": 1400}"#).expect("a .conf");
        assert_eq!(single.plugins[0].config["mtu"], 1400, "plugin fields are kept");
    }

    #[test]
    fn disable_check_is_a_string_or_a_boolean() {
        let path = Path::new("x.conflist");
        for (value, expected) in [(r#""true""#, true), ("true", true), (r#""false""#, false), ("false", false)] {
            let text =
                format!(r#"{{"cniVersion": "1.0.0", "name": "n", "disableCheck": {value}, "plugins": [{{"type": "x"}}]}}"#);
            assert_eq!(parse(path, &text).expect(value).disable_check, expected, "{value}");
        }
        let text = r#"{"cniVersion": "1.0.0", "name": "n", "disableCheck": "yes", "plugins": [{"type": "x"}]}"#;
        assert!(parse(path, text).expect_err("yes").to_string().contains("disableCheck"));
    }

    #[test]
    fn a_broken_configuration_names_the_file_and_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("10-pods.conflist");
        for (text, field) in [
            ("{", "EOF"),
            (r#"{"cniVersion": "1.0.0", "name": "pods"}"#, "plugins"),
            (r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "bridge"}, {}]}"#, "plugins[1].type"),
            (r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "../bin/sh"}]}"#, "plugins[0].type"),
            (r#"{"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}"#, "name"),
            (r#"{"cniVersion": "1.0.0", "name": "../x", "plugins": [{"type": "bridge"}]}"#, "name"),
            (r#"{"name": "pods", "plugins": [{"type": "bridge"}]}"#, "cniVersion"),
            (r#"{"cniVersion": "0.2.0", "name": "pods", "plugins": [{"type": "bridge"}]}"#, "cniVersion"),
            (
                r#"{"cniVersion": "1.0.0", "name": "p", "plugins": [{"type": "b", "capabilities": {"x": 1}}]}"#,
                "plugins[0].capabilities.x",
            ),
        ] {
            std::fs::write(&path, text).expect("write");
            let e = load(dir.path()).expect_err(text).to_string();
            assert!(e.contains("10-pods.conflist") && e.contains(field), "{text}: {e}");
        }
        let e = parse(Path::new("a.conf"), r#"{"cniVersion": "1.0.0", "name": "n"}"#).expect_err("no type").to_string();
        assert!(e.contains(": type: "), "a single configuration's field is named as its own: {e}");
    }
}
