//! UpdateRuntimeConfig: kubelet hands over the node's pod CIDR(s) once it knows them.
//!
//! The CIDRs are kept (and shown in `Status`'s verbose info) for the network code that comes with
//! pods; a request without `runtime_config` or with an empty CIDR changes nothing, as in
//! containerd. kubelet sends dual-stack CIDRs comma-separated; each must be a valid CIDR.

use std::net::IpAddr;

use roci_cri_proto::runtime_v1::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};
use tonic::Status;

use super::Cri;

pub(super) fn update_runtime_config(
    cri: &Cri,
    request: &UpdateRuntimeConfigRequest,
) -> Result<UpdateRuntimeConfigResponse, Status> {
    let cidrs = request.runtime_config.as_ref().and_then(|c| c.network_config.as_ref()).map(|n| n.pod_cidr.trim()).unwrap_or("");
    if cidrs.is_empty() {
        return Ok(UpdateRuntimeConfigResponse {});
    }
    for cidr in cidrs.split(',') {
        check_cidr(cidr.trim())
            .map_err(|reason| Status::invalid_argument(format!("runtime_config.network_config.pod_cidr: {cidr:?}: {reason}")))?;
    }
    let mut stored = cri.pod_cidr.write().unwrap_or_else(|e| e.into_inner());
    if *stored != cidrs {
        tracing::info!(pod_cidr = cidrs, "pod CIDR updated");
        *stored = cidrs.to_string();
    }
    Ok(UpdateRuntimeConfigResponse {})
}

fn check_cidr(cidr: &str) -> Result<(), &'static str> {
    let (addr, prefix) = cidr.split_once('/').ok_or("not ADDRESS/PREFIX")?;
    let addr: IpAddr = addr.parse().map_err(|_| "not an IP address")?;
    let prefix: u8 = prefix.parse().map_err(|_| "the prefix length is not a number")?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err("the prefix length is too long for the address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_cidr;

    #[test]
    fn cidrs() {
        for good in ["10.244.0.0/24", "fd00:10:244::/64", "0.0.0.0/0", "::/128"] {
            assert_eq!(check_cidr(good), Ok(()), "{good}");
        }
        for bad in ["10.244.0.0", "10.244.0/24", "10.244.0.0/33", "fd00::/129", "10.0.0.0/x", "/24"] {
            assert!(check_cidr(bad).is_err(), "{bad}");
        }
    }
}
