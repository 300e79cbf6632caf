//! CNI plugin execution (spec 1.0; lists of 0.3.0 to 1.1.0 run the same way): ADD, DEL and
//! CHECK of a network configuration list for one attachment (a pod's network namespace and
//! interface name).
//!
//! - ADD runs the plugins in order, each given the previous one's result as `prevResult`; the
//!   last result is the attachment's. It is cached on disk (with the list and the runtime
//!   arguments ADD used) before ADD returns, so that DEL after a daemon restart, or after the
//!   configuration file changed, runs what ADD ran. A failed ADD runs DEL for the whole list
//!   (reverse order, as the spec asks: a plugin may have half-made its part) and caches nothing.
//! - DEL runs the plugins in reverse order with the cached result as `prevResult`, then drops
//!   the cache. Without a cache (DEL after DEL, after a failed ADD, after a crash in ADD) it runs
//!   the list given, without `prevResult`; plugins treat missing resources as done. A network
//!   namespace that is gone (not a pinned namespace any more) is passed as an empty `CNI_NETNS`
//!   (the spec lets DEL run without it).
//! - CHECK runs the plugins in order with the cached result, unless the list sets
//!   `disableCheck` or its version predates CHECK (0.4.0).
//!
//! What a plugin gets on stdin is its object from the list without `capabilities`, with the
//! list's `name` and `cniVersion`, `runtimeConfig` holding only the runtime arguments its
//! capabilities ask for (`portMappings`, `bandwidth`), and `prevResult`. Its environment is the
//! daemon's (plugins such as portmap run `iptables` through `PATH`) with the `CNI_*` variables.
//!
//! Plugins are child processes (tokio::process; the daemon itself never forks into a container),
//! each in a process group of its own and given [`DEFAULT_PLUGIN_TIMEOUT`]: one that hangs is
//! killed with its group (what it forked too) and reaped.
//!
//! Concurrency: calls for different attachments may run at once (plugins lock what they share,
//! host-local its data directory); calls for one attachment must be serialised by the caller (the
//! pod's lifecycle does).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conf::{NetworkConfig, PluginConfig};
use super::result::CniResult;

/// The interface name of a pod's network (kubelet's and containerd's).
pub const DEFAULT_IFNAME: &str = "eth0";

/// How long one plugin may run. Plugins wait on locks (host-local's, iptables'), so this is
/// generous; it only bounds a plugin that hangs.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The most of a plugin's stdout and stderr read (a result is a few hundred bytes).
const OUTPUT_LIMIT: u64 = 4 << 20;

/// The version of the cache file's layout.
const CACHE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which plugin call an error comes from: "CNI ADD of pod ID on network NAME: plugin TYPE".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub command: Command,
    pub container_id: String,
    pub network: String,
    pub plugin: String,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI {} of {} on network {}: plugin {}", self.command, self.container_id, self.network, self.plugin)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI attachment: {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{call}: not found in {dirs}")]
    PluginNotFound { call: Box<Call>, dirs: String },
    #[error("{call}: run {path}: {source}")]
    Spawn { call: Box<Call>, path: PathBuf, source: std::io::Error },
    #[error("{call}: talk to the plugin: {source}")]
    Io { call: Box<Call>, source: std::io::Error },
    /// The plugin failed and said why, with the spec's error object (code 1-99 are the spec's,
    /// 11 is "try again later"; 100 and up are the plugin's own).
    #[error("{call}: error {code}: {msg}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Plugin { call: Box<Call>, code: u32, msg: String, details: Option<String> },
    #[error("{call}: failed ({status}) without a CNI error on stdout: {output}")]
    PluginFailed { call: Box<Call>, status: ExitStatus, output: String },
    #[error("{call}: did not finish within {timeout:?}: killed")]
    Timeout { call: Box<Call>, timeout: Duration },
    #[error("{call}: invalid result: {reason}")]
    InvalidResult { call: Box<Call>, reason: String },
    #[error("CNI ADD of {container_id}: {if_name} is already attached (result cached in {path}): DEL first")]
    AlreadyAttached { container_id: String, if_name: String, path: PathBuf },
    #[error("CNI CHECK of {container_id}: {if_name} is not attached (no cached result in {path})")]
    NotAttached { container_id: String, if_name: String, path: PathBuf },
    #[error("{op} the CNI result cache {path}: {source}")]
    Cache { op: &'static str, path: PathBuf, source: std::io::Error },
}

/// The pod an attachment is for, sent to plugins in `CNI_ARGS` as containerd does (the keys
/// Kubernetes-aware plugins read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The runtime arguments plugins may ask for with `capabilities` (the CNI conventions' names and
/// shapes). Each reaches only the plugins that ask for it, and only when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeArgs {
    /// `portMappings`: the pod's ports with a host port (kubelet's `hostPort`; ports without one
    /// are not mappings and must be left out by the caller).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// `bandwidth`: the pod's traffic shaping (from the `kubernetes.io/ingress-bandwidth` and
    /// `egress-bandwidth` annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// The host address to bind; empty for all.
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// Rates in bits per second, bursts in bits (the bandwidth plugin's units). A direction with a
/// zero rate is not shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

impl RuntimeArgs {
    /// The `runtimeConfig` entries for a plugin asking for `capabilities`.
    fn for_capabilities(&self, capabilities: &BTreeSet<String>) -> Map<String, Value> {
        let mut config = Map::new();
        if capabilities.contains("portMappings") && !self.port_mappings.is_empty() {
            config.insert("portMappings".into(), serde_json::to_value(&self.port_mappings).unwrap_or(Value::Null));
        }
        if let (true, Some(bandwidth)) = (capabilities.contains("bandwidth"), &self.bandwidth) {
            config.insert("bandwidth".into(), serde_json::to_value(bandwidth).unwrap_or(Value::Null));
        }
        config
    }
}

/// One interface of one pod on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the pod sandbox's id.
    pub container_id: String,
    /// `CNI_NETNS`: the pod's pinned network namespace.
    pub netns: PathBuf,
    /// `CNI_IFNAME`, [`DEFAULT_IFNAME`] for a pod.
    pub if_name: String,
    pub pod: PodIdentity,
    pub runtime: RuntimeArgs,
}

impl Attachment {
    fn validate(&self) -> Result<(), CniError> {
        let invalid = |field, reason: String| Err(CniError::InvalidArgument { field, reason });
        // The spec's container id; it is also part of the cache file's name.
        let id = &self.container_id;
        let id_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !id_ok {
            return invalid(
                "container_id",
                format!("{id:?}: letters, digits, '_', '.' and '-', starting with a letter or digit"),
            );
        }
        let ifn = &self.if_name;
        if ifn.is_empty()
            || ifn.len() > 15
            || ifn == "."
            || ifn == ".."
            || ifn.contains(['/', ':'])
            || ifn.contains(char::is_whitespace)
        {
            return invalid("if_name", format!("{ifn:?} is not a Linux interface name"));
        }
        for (field, value) in [("pod.namespace", &self.pod.namespace), ("pod.name", &self.pod.name), ("pod.uid", &self.pod.uid)] {
            if value.contains([';', '=']) {
                return invalid(field, format!("{value:?}: ';' and '=' cannot be passed in CNI_ARGS"));
            }
        }
        Ok(())
    }

    /// `CNI_ARGS` as containerd sends it.
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod.namespace, self.pod.name, self.container_id, self.pod.uid
        )
    }
}

/// What ADD left for an attachment: what DEL and CHECK run with, and what `PodSandboxStatus`
/// reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub network: NetworkConfig,
    pub runtime: RuntimeArgs,
    pub result: CniResult,
    /// The result as the last plugin printed it (the `prevResult` of DEL and CHECK).
    pub raw_result: Value,
}

/// The cache file: `<cache dir>/<container id>-<ifname>.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CacheFile {
    version: u32,
    container_id: String,
    if_name: String,
    network_path: PathBuf,
    network: Value,
    runtime: RuntimeArgs,
    result: Value,
}

/// Runs CNI plugins from `bin_dirs`, caching ADD results in `cache_dir`.
#[derive(Debug, Clone)]
pub struct Cni {
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    timeout: Duration,
}

impl Cni {
    /// Plugins are looked up in `bin_dirs` in order (`CNI_PATH` is the same list).
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Cni {
        Cni { bin_dirs, cache_dir: cache_dir.into(), timeout: DEFAULT_PLUGIN_TIMEOUT }
    }

    /// The time each plugin gets before it is killed.
    pub fn with_timeout(mut self, timeout: Duration) -> Cni {
        self.timeout = timeout;
        self
    }

    /// Attach: ADD every plugin of `network`, cache and return the final result. On failure
    /// everything is undone (DEL of the whole list) and the first error returned.
    pub async fn add(&self, network: &NetworkConfig, att: &Attachment) -> Result<CniResult, CniError> {
        att.validate()?;
        let cache = self.cache_path(att);
        if cache.exists() {
            return Err(CniError::AlreadyAttached {
                container_id: att.container_id.clone(),
                if_name: att.if_name.clone(),
                path: cache,
            });
        }
        let mut reached = 0;
        let added = self.add_all(network, att, &mut reached).await;
        let saved = added.and_then(|(raw, result)| {
            let file = CacheFile {
                version: CACHE_VERSION,
                container_id: att.container_id.clone(),
                if_name: att.if_name.clone(),
                network_path: network.path.clone(),
                network: network.to_json(),
                runtime: att.runtime.clone(),
                result: raw,
            };
            self.write_cache(&cache, &file).map(|()| result)
        });
        match saved {
            Ok(result) => {
                tracing::debug!(container_id = %att.container_id, network = %network.name, ips = ?result.pod_ips(&att.if_name), "CNI ADD done");
                Ok(result)
            }
            Err(e) => {
                // DEL of the plugins ADD ran (the failed one may have half-made its part); one
                // that was never found has nothing to undo, and its DEL would fail before the
                // others ran.
                let mut ran = network.clone();
                ran.plugins.truncate(reached);
                let netns = netns_for_del(&att.netns);
                if let Err(undo) = self.run_list(Command::Del, &ran, att, &netns, &att.runtime, None).await {
                    tracing::warn!(container_id = %att.container_id, error = %undo, "undo a failed CNI ADD");
                }
                Err(e)
            }
        }
    }

    /// ADD each plugin in order; `reached` counts the plugins that were run (whatever their
    /// outcome), for the undo.
    async fn add_all(
        &self,
        network: &NetworkConfig,
        att: &Attachment,
        reached: &mut usize,
    ) -> Result<(Value, CniResult), CniError> {
        let netns = att.netns.clone().into_os_string();
        let mut prev: Option<Value> = None;
        for plugin in &network.plugins {
            let call = call(Command::Add, network, att, plugin);
            let stdin = plugin_stdin(network, plugin, &att.runtime, prev.as_ref());
            let out = match self.exec(&call, att, &netns, &stdin).await {
                Ok(out) => {
                    *reached += 1;
                    out
                }
                Err(e @ CniError::PluginNotFound { .. }) => return Err(e),
                Err(e) => {
                    *reached += 1;
                    return Err(e);
                }
            };
            let value: Value = serde_json::from_slice(&out)
                .map_err(|e| CniError::InvalidResult { call: Box::new(call.clone()), reason: format!("not JSON: {e}") })?;
            if !value.is_object() {
                return Err(CniError::InvalidResult { call: Box::new(call), reason: "not a JSON object".into() });
            }
            prev = Some(value);
        }
        let last = network.plugins.last().map(|p| p.kind.as_str()).unwrap_or_default();
        let raw = prev.ok_or_else(|| CniError::InvalidResult {
            call: Box::new(Call {
                command: Command::Add,
                container_id: att.container_id.clone(),
                network: network.name.clone(),
                plugin: last.into(),
            }),
            reason: "the network has no plugins".into(),
        })?;
        let result = serde_json::from_value(raw.clone()).map_err(|e| CniError::InvalidResult {
            call: Box::new(Call {
                command: Command::Add,
                container_id: att.container_id.clone(),
                network: network.name.clone(),
                plugin: last.into(),
            }),
            reason: e.to_string(),
        })?;
        Ok((raw, result))
    }

    /// Detach: DEL every plugin in reverse order, with what ADD cached; `network` (the
    /// configuration in force) is used only when nothing is cached, and with none of either
    /// there is nothing to undo. Succeeds when already detached.
    pub async fn del(&self, network: Option<&NetworkConfig>, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let path = self.cache_path(att);
        let cached = match self.read_cache(&path) {
            Ok(cached) => cached,
            // A cache that cannot be read must not keep the pod from being torn down forever.
            Err(e) => {
                tracing::warn!(container_id = %att.container_id, error = %e, "DEL without the cached ADD result");
                None
            }
        };
        let netns = netns_for_del(&att.netns);
        match (&cached, network) {
            (Some(c), _) => self.run_list(Command::Del, &c.network, att, &netns, &c.runtime, Some(&c.raw_result)).await?,
            (None, Some(network)) => self.run_list(Command::Del, network, att, &netns, &att.runtime, None).await?,
            (None, None) => {
                tracing::debug!(container_id = %att.container_id, "CNI DEL: no cached result and no network: nothing to do")
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniError::Cache { op: "remove", path, source }),
        }
    }

    /// CHECK the attachment against what ADD cached.
    pub async fn check(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let path = self.cache_path(att);
        let cached = self.read_cache(&path)?.ok_or_else(|| CniError::NotAttached {
            container_id: att.container_id.clone(),
            if_name: att.if_name.clone(),
            path: path.clone(),
        })?;
        if cached.network.disable_check || matches!(cached.network.cni_version.as_str(), "0.3.0" | "0.3.1") {
            return Ok(());
        }
        let netns = att.netns.clone().into_os_string();
        self.run_list(Command::Check, &cached.network, att, &netns, &cached.runtime, Some(&cached.raw_result)).await
    }

    /// What ADD cached for `container_id` on `if_name`, if anything.
    pub fn cached(&self, container_id: &str, if_name: &str) -> Result<Option<Cached>, CniError> {
        self.read_cache(&self.cache_dir.join(format!("{container_id}-{if_name}.json")))
    }

    /// DEL (reverse order) or CHECK (in order) every plugin of `network`, stopping at the first
    /// error.
    async fn run_list(
        &self,
        command: Command,
        network: &NetworkConfig,
        att: &Attachment,
        netns: &OsString,
        runtime: &RuntimeArgs,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let plugins: Vec<&PluginConfig> = match command {
            Command::Del => network.plugins.iter().rev().collect(),
            Command::Add | Command::Check => network.plugins.iter().collect(),
        };
        for plugin in plugins {
            let call = call(command, network, att, plugin);
            self.exec(&call, att, netns, &plugin_stdin(network, plugin, runtime, prev)).await?;
        }
        Ok(())
    }

    /// Run one plugin and return its stdout when it succeeds.
    async fn exec(&self, call: &Call, att: &Attachment, netns: &OsString, stdin: &Value) -> Result<Vec<u8>, CniError> {
        let path = self.bin_dirs.iter().map(|dir| dir.join(&call.plugin)).find(|path| path.is_file()).ok_or_else(|| {
            CniError::PluginNotFound { call: Box::new(call.clone()), dirs: self.cni_path().to_string_lossy().into_owned() }
        })?;
        let stdin = serde_json::to_vec(stdin).map_err(|e| CniError::Io { call: Box::new(call.clone()), source: e.into() })?;
        tracing::debug!(plugin = %path.display(), command = %call.command, container_id = %call.container_id, "run a CNI plugin");
        let mut child = tokio::process::Command::new(&path)
            .env("CNI_COMMAND", call.command.as_str())
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", &att.if_name)
            .env("CNI_ARGS", att.cni_args())
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a timeout kills what it started as well.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| CniError::Spawn { call: Box::new(call.clone()), path: path.clone(), source })?;
        let pid = child.id();
        let (input, output, errors) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let run = async {
            let write = async move {
                if let Some(mut input) = input {
                    match input.write_all(&stdin).await {
                        // A plugin may fail before reading its configuration.
                        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                        _ => {}
                    }
                }
                Ok(())
            };
            let (_, out, err) = tokio::try_join!(write, read_all(output), read_all(errors))?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done.map_err(|source| CniError::Io { call: Box::new(call.clone()), source })?,
            Err(_) => {
                // Not reaped yet (wait() never returned), so the group id is still the plugin's.
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
                if let Err(e) = child.wait().await {
                    tracing::warn!(plugin = %path.display(), error = %e, "reap a killed CNI plugin");
                }
                return Err(CniError::Timeout { call: Box::new(call.clone()), timeout: self.timeout });
            }
        };
        if !err.is_empty() {
            tracing::debug!(plugin = %call.plugin, command = %call.command, stderr = %String::from_utf8_lossy(&err).trim_end(), "CNI plugin's stderr");
        }
        if status.success() {
            return Ok(out);
        }
        #[derive(Deserialize)]
        struct PluginError {
            code: u32,
            msg: String,
            #[serde(default)]
            details: Option<String>,
        }
        match serde_json::from_slice::<PluginError>(&out) {
            Ok(e) => Err(CniError::Plugin {
                call: Box::new(call.clone()),
                code: e.code,
                msg: e.msg,
                details: e.details.filter(|d| !d.is_empty()),
            }),
            Err(_) => {
                let text = if out.is_empty() { &err } else { &out };
                let mut output = String::from_utf8_lossy(text).trim().to_string();
                if output.len() > 1000 {
                    let end = (0..=1000).rev().find(|&i| output.is_char_boundary(i)).unwrap_or(0);
                    output.truncate(end);
                    output.push_str("...");
                }
                Err(CniError::PluginFailed { call: Box::new(call.clone()), status, output })
            }
        }
    }

    fn cni_path(&self) -> OsString {
        std::env::join_paths(&self.bin_dirs).unwrap_or_default()
    }

    fn cache_path(&self, att: &Attachment) -> PathBuf {
        self.cache_dir.join(format!("{}-{}.json", att.container_id, att.if_name))
    }

    fn read_cache(&self, path: &Path) -> Result<Option<Cached>, CniError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CniError::Cache { op: "read", path: path.into(), source }),
        };
        let invalid = |reason: String| CniError::Cache {
            op: "parse",
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        };
        let file: CacheFile = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if file.version != CACHE_VERSION {
            return Err(invalid(format!("version {} (this build reads {CACHE_VERSION})", file.version)));
        }
        let network = NetworkConfig::from_json(&file.network_path, &file.network).map_err(|e| invalid(e.to_string()))?;
        let result = serde_json::from_value(file.result.clone()).map_err(|e| invalid(format!("result: {e}")))?;
        Ok(Some(Cached { network, runtime: file.runtime, result, raw_result: file.result }))
    }

    /// Write the cache file atomically: a temporary file, fsync'd, renamed over.
    fn write_cache(&self, path: &Path, file: &CacheFile) -> Result<(), CniError> {
        let err = |op, source| CniError::Cache { op, path: path.into(), source };
        std::fs::create_dir_all(&self.cache_dir).map_err(|e| err("create the directory of", e))?;
        let text = serde_json::to_vec_pretty(file).map_err(|e| err("encode", e.into()))?;
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&text)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err("write", e));
        }
        Ok(())
    }
}

fn call(command: Command, network: &NetworkConfig, att: &Attachment, plugin: &PluginConfig) -> Call {
    Call { command, container_id: att.container_id.clone(), network: network.name.clone(), plugin: plugin.kind.clone() }
}

/// DEL may run after the namespace is gone (or when a crash left its file unpinned): then
/// `CNI_NETNS` is empty, which plugins take as "nothing left inside" rather than an error about
/// the path.
fn netns_for_del(netns: &Path) -> OsString {
    if super::netns::is_pinned(netns) {
        netns.as_os_str().to_owned()
    } else {
        OsString::new()
    }
}

/// What `plugin` gets on stdin (the spec's "execution configuration").
fn plugin_stdin(network: &NetworkConfig, plugin: &PluginConfig, runtime: &RuntimeArgs, prev: Option<&Value>) -> Value {
    let mut config = plugin.config.clone();
    config.remove("capabilities");
    config.insert("name".into(), Value::String(network.name.clone()));
    config.insert("cniVersion".into(), Value::String(network.cni_version.clone()));
    let dynamic = runtime.for_capabilities(&plugin.capabilities);
    if !dynamic.is_empty() {
        // Entries written in the file's own runtimeConfig stay unless the runtime sets them.
        match config.entry("runtimeConfig").or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(existing) => existing.extend(dynamic),
            other => *other = Value::Object(dynamic),
        }
    }
    if let Some(prev) = prev {
        config.insert("prevResult".into(), prev.clone());
    }
    Value::Object(config)
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(OUTPUT_LIMIT).read_to_end(&mut data).await?;
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::conf;

    fn network() -> NetworkConfig {
        conf::parse(
            Path::new("10-pods.conflist"),
            r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [
                {"type": "bridge", "name": "ignored", "cniVersion": "0.4.0"},
                {"type": "portmap", "capabilities": {"portMappings": true}, "runtimeConfig": {"other": 1}},
                {"type": "bandwidth", "capabilities": {"bandwidth": true, "portMappings": false}}]}"#,
        )
        .expect("parse")
    }

    fn runtime() -> RuntimeArgs {
        RuntimeArgs {
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: String::new(),
            }],
            bandwidth: Some(Bandwidth { ingress_rate: 1000, ingress_burst: 2000, egress_rate: 0, egress_burst: 0 }),
        }
    }

    #[test]
    fn each_plugin_gets_the_list_name_version_and_only_its_capabilities() {
        let net = network();
        let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": []});
        let bridge = plugin_stdin(&net, &net.plugins[0], &runtime(), None);
        assert_eq!(bridge, serde_json::json!({"type": "bridge", "name": "pods", "cniVersion": "1.0.0"}));
        let portmap = plugin_stdin(&net, &net.plugins[1], &runtime(), Some(&prev));
        assert_eq!(
            portmap,
            serde_json::json!({"type": "portmap", "name": "pods", "cniVersion": "1.0.0", "prevResult": prev,
                "runtimeConfig": {"other": 1, "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}})
        );
        let bandwidth = plugin_stdin(&net, &net.plugins[2], &runtime(), None);
        assert_eq!(
            bandwidth["runtimeConfig"],
            serde_json::json!({"bandwidth": {"ingressRate": 1000, "ingressBurst": 2000, "egressRate": 0, "egressBurst": 0}})
        );
        let none = plugin_stdin(&net, &net.plugins[2], &RuntimeArgs::default(), None);
        assert!(none.get("runtimeConfig").is_none(), "nothing to give: {none}");
    }

    #[test]
    fn cni_args_are_containerds() {
        let att = Attachment {
            container_id: "abc123".into(),
            netns: "/run/netns/abc123".into(),
            if_name: DEFAULT_IFNAME.into(),
            pod: PodIdentity { namespace: "default".into(), name: "web".into(), uid: "u-1".into() },
            runtime: RuntimeArgs::default(),
        };
        att.validate().expect("valid");
        assert_eq!(
            att.cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1"
        );
        for bad in [
            Attachment { container_id: "../x".into(), ..att.clone() },
            Attachment { container_id: String::new(), ..att.clone() },
            Attachment { if_name: "a/b".into(), ..att.clone() },
            Attachment { if_name: "sixteen-chars-xx".into(), ..att.clone() },
            Attachment { pod: PodIdentity { name: "a;b".into(), ..att.pod.clone() }, ..att.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(CniError::InvalidArgument { .. })), "{bad:?}");
        }
    }

    #[test]
    fn plugin_errors_name_the_plugin_and_code() {
        let e = CniError::Plugin {
            call: Box::new(Call {
                command: Command::Add,
                container_id: "p1".into(),
                network: "pods".into(),
                plugin: "bridge".into(),
            }),
            code: 11,
            msg: "busy".into(),
            details: Some("try later".into()),
        };
        assert_eq!(e.to_string(), "CNI ADD of p1 on network pods: plugin bridge: error 11: busy (try later)");
    }
}
