//! Pod networking: each pod gets a network namespace of its own, pinned on a file, and is
//! attached to the CNI network in force.
//!
//! - [`conf`]: which network configuration is in force (also what `Status` reports).
//! - [`netns`]: pinned network namespaces (`<state>/netns/<pod id>`), made without forking.
//! - [`cni`]: running the CNI plugins (ADD, DEL, CHECK) and caching ADD's result
//!   (`<state>/cni/<pod id>-eth0.json`).
//! - [`result`]: the typed ADD result (the pod's IPs, routes, DNS).
//! - [`PodNetworks`]: the two together, as the pod lifecycle calls them.
//!
//! A pod's network goes:
//! ```text
//!   setup:    load the configuration -> pin a new netns -> CNI ADD (cached) -> the pod's IPs
//!             (a failure undoes what was done: DEL, netns removed)
//!   teardown: CNI DEL (with what ADD cached) -> netns removed; again after that: nothing to do
//! ```
//! The loopback interface is not brought up here: like containerd ("loopback is always up"),
//! the configuration in force is expected to bring it up through the `loopback` plugin or
//! otherwise; roci-cri runs what the list says and nothing more.

pub mod cni;
pub mod conf;
pub mod netns;
pub mod result;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use cni::{Attachment, Bandwidth, Cached, Cni, CniError, PodIdentity, PortMapping, Protocol, RuntimeArgs, DEFAULT_IFNAME};
pub use conf::{load, NetworkConfig, NetworkConfigError};
pub use netns::NetnsError;
pub use result::CniResult;

use crate::config::Config;

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
        let att = self.attachment(request, netns.clone());
        match self.cni.add(&network, &att).await {
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

    /// Detach the pod and remove its namespace. Idempotent; when DEL fails the namespace is kept,
    /// so that a retry finds everything in place.
    pub async fn teardown(&self, request: &PodRequest) -> Result<(), NetworkError> {
        let netns = self.netns_path(&request.id);
        // Without a cached result, the configuration in force is what DEL runs; none at all means
        // the pod was never attached by this network.
        let network = conf::load(&self.conf_dir).ok();
        self.cni.del(network.as_ref(), &self.attachment(request, netns.clone())).await?;
        netns::remove(&netns)?;
        Ok(())
    }

    /// CHECK the pod's attachment.
    pub async fn check(&self, request: &PodRequest) -> Result<(), NetworkError> {
        Ok(self.cni.check(&self.attachment(request, self.netns_path(&request.id))).await?)
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
