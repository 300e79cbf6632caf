//! Status: the RuntimeReady and NetworkReady conditions, and with `verbose` the daemon's
//! configuration and CNI state as JSON strings in `info` (the keys containerd uses where the
//! content is the same kind: `config`, `lastCNILoadStatus`); the runtime handlers and the
//! runtime's features kubelet checks pods against.

use std::collections::HashMap;

use roci_cri_proto::runtime_v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest, StatusResponse,
};
use tonic::Status;

use super::Cri;
use crate::network;

/// Condition types and the reason for a missing network, as kubelet knows them.
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";
const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";

pub(super) fn status(cri: &Cri, request: &StatusRequest) -> Result<StatusResponse, Status> {
    // The daemon serves, so the runtime is ready: there is nothing it waits for before serving
    // in this build (recovery of pods and containers will run before the socket is bound).
    let runtime = RuntimeCondition { r#type: RUNTIME_READY.into(), status: true, reason: String::new(), message: String::new() };
    let cni = network::load(&cri.config.cni.conf_dir);
    let network = match &cni {
        Ok(_) => RuntimeCondition { r#type: NETWORK_READY.into(), status: true, reason: String::new(), message: String::new() },
        Err(e) => RuntimeCondition {
            r#type: NETWORK_READY.into(),
            status: false,
            reason: NETWORK_NOT_READY_REASON.into(),
            message: format!("Network plugin returns error: cni plugin not initialized: {e}"),
        },
    };
    let mut info = HashMap::new();
    if request.verbose {
        let config = serde_json::to_string(&*cri.config)
            .map_err(|e| Status::internal(format!("Status: encode the configuration as JSON: {e}")))?;
        info.insert("config".to_string(), config);
        let cni_status = match &cni {
            Ok(_) => "OK".to_string(),
            Err(e) => e.to_string(),
        };
        info.insert("lastCNILoadStatus".to_string(), cni_status);
        if let Ok(conf) = &cni {
            let network = serde_json::json!({ "path": conf.path, "name": conf.name, "plugins": conf.plugin_types() });
            info.insert("cniconfig".to_string(), network.to_string());
        }
        let pod_cidr = cri.pod_cidr.read().unwrap_or_else(|e| e.into_inner()).clone();
        info.insert("podCIDR".to_string(), pod_cidr);
    }
    Ok(StatusResponse {
        status: Some(RuntimeStatus { conditions: vec![runtime, network] }),
        info,
        runtime_handlers: vec![default_handler(cri)],
        features: Some(RuntimeFeatures { supplemental_groups_policy: true, user_namespaces_host_network: false }),
    })
}

/// The one runtime handler of this build, the default (`""`), and what it can do, as containerd
/// 1.7+ reports its handlers (kubelet refuses a pod that needs a feature its handler lacks):
/// recursive read-only mounts where the kernel has `mount_setattr` (5.12), which the spec
/// conversion then honours (`Mount.recursive_read_only`); no user namespaces (a pod that asks for
/// one is refused). `supplemental_groups_policy` (Strict) is honoured by the conversion; a user
/// namespace with the host's network is not.
fn default_handler(cri: &Cri) -> RuntimeHandler {
    RuntimeHandler {
        name: String::new(),
        features: Some(RuntimeHandlerFeatures { recursive_read_only_mounts: cri.host.kernel >= (5, 12), user_namespaces: false }),
    }
}
