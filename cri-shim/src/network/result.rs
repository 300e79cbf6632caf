//! A CNI ADD result (spec 0.3.0 to 1.1.0: the shapes agree on what is read here): the interfaces
//! the plugins made, the addresses and routes they gave the pod, and its DNS settings.
//!
//! The result travels between plugins as the JSON the last plugin printed (`prevResult` is that
//! text, untouched); this typed form is what the runtime reads from it (the pod's IPs for
//! `PodSandboxStatus`, DNS). Fields a later spec adds (an interface's `mtu`, a route's `table`)
//! are not read.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The network namespace path of an interface inside the pod; empty for the host's side.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix length, `10.88.0.2/16`.
    pub address: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The index into `interfaces` of the interface holding the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// An address and a prefix length, written `ADDR/LEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl FromStr for IpPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<IpPrefix, String> {
        let (addr, len) = s.split_once('/').ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX-LENGTH"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix_len: u8 = len.parse().map_err(|e| format!("{s:?}: prefix length: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("{s:?}: prefix length {prefix_len} is over {max}"));
        }
        Ok(IpPrefix { addr, prefix_len })
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for IpPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IpPrefix, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl CniResult {
    /// The pod's addresses on `if_name` (the interface inside the pod), IPv4 first as kubelet
    /// expects the primary IP. An address that names no interface counts as the pod's when no
    /// address names one (plugins of 0.3.0 may leave `interface` out).
    pub fn pod_ips(&self, if_name: &str) -> Vec<IpAddr> {
        let in_pod = |ip: &IpConfig| match ip.interface {
            Some(i) => self.interfaces.get(i).is_some_and(|iface| iface.name == if_name && !iface.sandbox.is_empty()),
            None => self.ips.iter().all(|ip| ip.interface.is_none()),
        };
        let mut ips: Vec<IpAddr> = self.ips.iter().filter(|ip| in_pod(ip)).map(|ip| ip.address.addr).collect();
        // A stable sort keeps the plugin's order within each family.
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bridge plugin's result, as 1.1.1 prints it.
    const BRIDGE: &str = r#"{"cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"}, {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
                       {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p"}],
        "ips": [{"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
                {"address": "10.99.0.1/24", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.88.0.1"}],
        "dns": {"nameservers": ["10.88.0.1"], "search": ["svc"]}}"#;

    #[test]
    fn a_bridge_result_gives_the_pod_ips_ipv4_first() {
        let result: CniResult = serde_json::from_str(BRIDGE).expect("parse");
        assert_eq!(result.pod_ips("eth0"), ["10.88.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        assert!(result.pod_ips("eth1").is_empty());
        assert_eq!(result.routes[1].gw, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(result.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(result.dns.search, ["svc"]);
        let again: CniResult = serde_json::from_value(serde_json::to_value(&result).expect("encode")).expect("decode");
        assert_eq!(again, result);
    }

    #[test]
    fn a_0_3_result_without_interfaces_gives_its_ips() {
        let result: CniResult =
            serde_json::from_str(r#"{"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.0.7/24"}]}"#)
                .expect("parse");
        assert_eq!(result.pod_ips("eth0"), ["10.1.0.7".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in ["10.0.0.1", "10.0.0.1/33", "fd00::1/129", "x/8", "10.0.0.1/-1"] {
            assert!(bad.parse::<IpPrefix>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<CniResult>(r#"{"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]}"#).is_err());
    }
}
