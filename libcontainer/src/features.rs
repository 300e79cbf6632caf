//! The OCI features document (`roci features`): what this build really
//! implements, so callers can adapt before they try.

use serde_json::{json, Value};

use crate::container::OCI_VERSION;

pub fn document() -> Value {
    let caps: Vec<String> = {
        let mut v: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    let layout = crate::cgroups::detect().ok();
    let has = |m: crate::cgroups::Mode| layout.is_some_and(|l| l.mode == m);
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::rootfs::options::KNOWN,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "uts"],
            "capabilities": caps,
            "cgroup": {
                "v1": has(crate::cgroups::Mode::Legacy) || has(crate::cgroups::Mode::Hybrid),
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": false
            },
            "seccomp": crate::seccomp::features(),
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.roci.version": env!("CARGO_PKG_VERSION")
        }
    })
}
