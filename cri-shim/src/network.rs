//! The pod network's configuration: which CNI network configuration is in force, and whether
//! there is one at all (what `Status` reports as the NetworkReady condition).
//!
//! The pod network is the first file named `*.conf`, `*.conflist` or `*.json` in the configuration
//! directory, in byte order of the names (the order libcni's `ConfFiles` and containerd use). The
//! directory is read at each call: a configuration written after the daemon started (by a network
//! add-on's installer, typically) is picked up without a restart, and one removed is noticed.

use std::path::{Path, PathBuf};

/// The extensions of network configuration files.
const EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

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

/// A network configuration found in the directory: a `.conflist`'s list or a single `.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub path: PathBuf,
    /// The network's `name`.
    pub name: String,
    /// The plugins' `type`s, in order (one for a `.conf`).
    pub plugins: Vec<String>,
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

fn parse(path: &Path, text: &str) -> Result<NetworkConfig, NetworkConfigError> {
    let invalid = |reason: String| NetworkConfigError::Invalid { path: path.into(), reason };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let object = value.as_object().ok_or_else(|| invalid("not a JSON object".into()))?;
    let name = match object.get("name") {
        Some(serde_json::Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err(invalid("name: missing or not a non-empty string".into())),
    };
    let is_list = path.extension().is_some_and(|e| e == "conflist");
    let plugins = if is_list {
        let list = object
            .get("plugins")
            .and_then(|p| p.as_array())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("plugins: missing or not a non-empty list".into()))?;
        list.iter()
            .enumerate()
            .map(|(i, plugin)| plugin_type(plugin).ok_or_else(|| invalid(format!("plugins[{i}].type: missing or not a string"))))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![plugin_type(&value).ok_or_else(|| invalid("type: missing or not a string".into()))?]
    };
    Ok(NetworkConfig { path: path.into(), name, plugins })
}

fn plugin_type(plugin: &serde_json::Value) -> Option<String> {
    plugin.get("type").and_then(|t| t.as_str()).filter(|t| !t.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: &str = r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}},
        {"type": "portmap", "capabilities": {"portMappings": true}}]}"#;

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
        std::fs::write(dir.path().join("20-other.conf"), r#"{"cniVersion": "1.0.0", "name": "other", "type": "ptp"}"#)
            .expect("write");
        let other = load(dir.path()).expect("one .conf");
        assert_eq!((other.name.as_str(), other.plugins.as_slice()), ("other", &["ptp".to_string()][..]));
        std::fs::write(dir.path().join("10-pods.conflist"), BRIDGE).expect("write");
        let pods = load(dir.path()).expect("two files");
        assert_eq!(pods.path, dir.path().join("10-pods.conflist"));
        assert_eq!(pods.name, "pods");
        assert_eq!(pods.plugins, ["bridge", "portmap"]);
    }

    #[test]
    fn a_broken_configuration_names_the_file_and_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("10-pods.conflist");
        for (text, field) in [
            ("{", "EOF"),
            (r#"{"name": "pods"}"#, "plugins"),
            (r#"{"name": "pods", "plugins": [{"type": "bridge"}, {}]}"#, "plugins[1].type"),
            (r#"{"plugins": [{"type": "bridge"}]}"#, "name"),
        ] {
            std::fs::write(&path, text).expect("write");
            let e = load(dir.path()).expect_err(text).to_string();
            assert!(e.contains("10-pods.conflist") && e.contains(field), "{text}: {e}");
        }
    }
}
