//! Pod networking: each pod gets a network namespace of its own, pinned on a file, and is
//! attached to the CNI network in force.
//!
//! - [`conf`]: which network configuration is in force (also what `Status` reports).
//! - [`netns`]: pinned network namespaces (`<state>/netns/<pod id>`), made without forking.
//! - [`cni`]: running the CNI plugins (ADD, DEL, CHECK) and caching ADD's result
//!   (`<state>/cni/<pod id>-<ifname>.json`, one for `lo` and one for `eth0`).
//! - [`result`]: the typed ADD result (the pod's IPs, routes, DNS).
//! - [`bandwidth`]: a pod's traffic shaping from its `kubernetes.io/*-bandwidth` annotations.
//! - [`PodNetworks`]: namespaces and CNI together, as the pod lifecycle calls them.
//!
//! A pod's network goes:
//! ```text
//!   setup:    load the configuration -> pin a new netns -> ADD loopback (lo) -> ADD the network
//!             (eth0), each cached -> the pod's IPs
//!             (a failure undoes what was done: DEL of what was added, netns removed)
//!   teardown: DEL the network, DEL loopback (with what ADD cached) -> netns removed;
//!             again after that: nothing left to do, success
//! ```
//! Like containerd ("loopback is always up"), every pod is first attached to a built-in network
//! of the `loopback` plugin alone, whatever the configuration in force says: a pod's `lo` is up
//! even when the configured list does not bring it up. The `loopback` plugin must therefore be
//! in the CNI bin directory (Debian's containernetworking-plugins has it).

pub mod bandwidth;
pub mod cni;
pub mod conf;
pub mod netns;
pub mod result;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use cni::{Attachment, Bandwidth, Cached, Cni, CniError, PodIdentity, PortMapping, Protocol, RuntimeArgs, DEFAULT_IFNAME};
pub use conf::{load, NetworkConfig, NetworkConfigError, PluginConfig};
pub use netns::NetnsError;
pub use result::CniResult;

use crate::config::Config;

/// The interface name of the loopback attachment (containerd's).
pub const LOOPBACK_IFNAME: &str = "lo";

/// The built-in network every pod is attached to first: the `loopback` plugin alone.
pub fn loopback_network() -> NetworkConfig {
    let mut config = serde_json::Map::new();
    config.insert("type".into(), "loopback".into());
    NetworkConfig {
        path: "(built-in)".into(),
        name: "cni-loopback".into(),
        cni_version: "1.0.0".into(),
        disable_check: false,
        plugins: vec![PluginConfig { kind: "loopback".into(), capabilities: BTreeSet::new(), config }],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("pod network: {0}")]
    Config(#[from] NetworkConfigError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error("pod {pod_id}: the network namespace task failed: {reason}")]
    Task { pod_id: String, reason: String },
}

/// What a pod's network setup is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRequest {
    /// The pod sandbox's id: the namespace file's name and `CNI_CONTAINERID`.
    pub id: String,
    pub pod: PodIdentity,
    pub runtime: RuntimeArgs,
}

/// A pod's network, set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The pinned network namespace: the OCI spec's `linux.namespaces[network].path` of every
    /// container of the pod.
    pub netns: PathBuf,
    /// The name of the network the pod is attached to.
    pub network: String,
    /// The pod's addresses on [`DEFAULT_IFNAME`], IPv4 first (`PodSandboxStatus`'s `ip` and
    /// `additional_ips`).
    pub ips: Vec<IpAddr>,
    pub result: CniResult,
}

/// Pod networks of one daemon: the configuration directory, where namespaces are pinned, and the
/// CNI runner.
#[derive(Debug, Clone)]
pub struct PodNetworks {
    conf_dir: PathBuf,
    netns_dir: PathBuf,
    cni: Cni,
}

impl PodNetworks {
    /// As configured: `cni.conf_dir`, `cni.bin_dir`, namespaces under `<state>/netns` and the
    /// ADD results under `<state>/cni` (both lost on reboot, with the namespaces they are about).
    pub fn new(config: &Config) -> PodNetworks {
        PodNetworks::with_parts(
            config.cni.conf_dir.clone(),
            config.state.join("netns"),
            Cni::new(vec![config.cni.bin_dir.clone()], config.state.join("cni")),
        )
    }

    pub fn with_parts(conf_dir: PathBuf, netns_dir: PathBuf, cni: Cni) -> PodNetworks {
        PodNetworks { conf_dir, netns_dir, cni }
    }

    /// Where pod `pod_id`'s namespace is (or would be) pinned.
    pub fn netns_path(&self, pod_id: &str) -> PathBuf {
        self.netns_dir.join(pod_id)
    }

    /// Give the pod a new network namespace and attach it to the network in force. On error
    /// nothing is left: no namespace, no interface, no address, no cache.
    pub async fn setup(&self, request: &PodRequest) -> Result<PodNetwork, NetworkError> {
        let network = conf::load(&self.conf_dir)?;
        let netns = self.create_netns(&request.id).await?;
        match self.attach(&network, request, &netns).await {
            Ok(result) => {
                let ips = result.pod_ips(DEFAULT_IFNAME);
                Ok(PodNetwork { netns, network: network.name, ips, result })
            }
            Err(e) => {
                if let Err(undo) = netns::remove(&netns) {
                    tracing::warn!(pod_id = %request.id, error = %undo, "remove the network namespace of a pod whose network failed");
                }
                Err(e.into())
            }
        }
    }

    /// ADD loopback then the network; a failure of the second undoes the first (the failed ADD
    /// has undone itself).
    async fn attach(&self, network: &NetworkConfig, request: &PodRequest, netns: &Path) -> Result<CniResult, CniError> {
        let loopback = loopback_network();
        let lo = self.loopback_attachment(request, netns.into());
        self.cni.add(&loopback, &lo).await?;
        match self.cni.add(network, &self.attachment(request, netns.into())).await {
            Ok(result) => Ok(result),
            Err(e) => {
                if let Err(undo) = self.cni.del(Some(&loopback), &lo).await {
                    tracing::warn!(pod_id = %request.id, error = %undo, "undo the loopback attachment of a pod whose network failed");
                }
                Err(e)
            }
        }
    }

    /// Detach the pod and remove its namespace. Idempotent; when DEL fails the namespace is kept,
    /// so that a retry finds everything in place.
    pub async fn teardown(&self, request: &PodRequest) -> Result<(), NetworkError> {
        let netns = self.netns_path(&request.id);
        // Without a cached result, the configuration in force is what DEL runs; none at all means
        // the pod was never attached by this network.
        let network = conf::load(&self.conf_dir).ok();
        self.cni.del(network.as_ref(), &self.attachment(request, netns.clone())).await?;
        self.cni.del(Some(&loopback_network()), &self.loopback_attachment(request, netns.clone())).await?;
        netns::remove(&netns)?;
        Ok(())
    }

    /// Whether anything of the pod's network is left for [`PodNetworks::teardown`] to undo: its
    /// namespace file, or a cached ADD result (a teardown that succeeded removed both). An
    /// unreadable cache counts as left.
    pub fn has_remains(&self, pod_id: &str) -> bool {
        let netns = self.netns_path(pod_id);
        netns.exists()
            || netns::is_pinned(&netns)
            || [DEFAULT_IFNAME, LOOPBACK_IFNAME].iter().any(|ifname| !matches!(self.cni.cached(pod_id, ifname), Ok(None)))
    }

    /// CHECK the pod's attachments (loopback, then the network).
    pub async fn check(&self, request: &PodRequest) -> Result<(), NetworkError> {
        let netns = self.netns_path(&request.id);
        self.cni.check(&self.loopback_attachment(request, netns.clone())).await?;
        Ok(self.cni.check(&self.attachment(request, netns)).await?)
    }

    /// The pod's network as ADD left it, if it has one (for `PodSandboxStatus`, and after a
    /// restart).
    pub fn status(&self, pod_id: &str) -> Result<Option<PodNetwork>, NetworkError> {
        let Some(cached) = self.cni.cached(pod_id, DEFAULT_IFNAME)? else { return Ok(None) };
        Ok(Some(PodNetwork {
            netns: self.netns_path(pod_id),
            network: cached.network.name,
            ips: cached.result.pod_ips(DEFAULT_IFNAME),
            result: cached.result,
        }))
    }

    fn attachment(&self, request: &PodRequest, netns: PathBuf) -> Attachment {
        Attachment {
            container_id: request.id.clone(),
            netns,
            if_name: DEFAULT_IFNAME.into(),
            pod: request.pod.clone(),
            runtime: request.runtime.clone(),
        }
    }

    fn loopback_attachment(&self, request: &PodRequest, netns: PathBuf) -> Attachment {
        Attachment {
            container_id: request.id.clone(),
            netns,
            if_name: LOOPBACK_IFNAME.into(),
            pod: request.pod.clone(),
            runtime: RuntimeArgs::default(),
        }
    }

    /// Pin a new namespace from a blocking-pool task (the pinning thread is its own, see
    /// [`netns`]).
    async fn create_netns(&self, pod_id: &str) -> Result<PathBuf, NetworkError> {
        let (dir, name) = (self.netns_dir.clone(), pod_id.to_string());
        tokio::task::spawn_blocking(move || netns::create(&dir, &name))
            .await
            .map_err(|e| NetworkError::Task { pod_id: pod_id.into(), reason: e.to_string() })?
            .map_err(Into::into)
    }

    /// The configuration directory.
    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }
}
