//! Version: which runtime and CRI API this is.

use roci_cri_proto::runtime_v1::{VersionRequest, VersionResponse};

/// The version of the kubelet-runtime API (`VersionResponse.version`): kubelet compares it with
/// its own, "0.1.0" for every runtime.v1 client and server so far.
const KUBE_API_VERSION: &str = "0.1.0";

/// The request's `version` (the client's API version) is informational: every runtime.v1 client
/// speaks this API, and containerd answers the same whatever it is.
pub(super) fn version(request: &VersionRequest) -> VersionResponse {
    tracing::debug!(client_version = %request.version, "Version");
    VersionResponse {
        version: KUBE_API_VERSION.into(),
        runtime_name: "roci".into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: "v1".into(),
    }
}
