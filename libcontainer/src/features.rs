//! The OCI features document (`roci features`): what this build really
//! implements, so callers can adapt before they try (containerd, for one,
//! uses idmapped mounts only when `mountExtensions.idmap.enabled` is true).
//!
//! Every list here is taken from the code that implements it (the mount
//! option parser's words, the namespace table, the seccomp compiler, the
//! memory policy modes), and the tests below check each entry is accepted.

use std::collections::HashMap;

use oci_spec::runtime::{
    Apparmor, Cgroup, Features, IDMap, IntelRdt, LinuxFeature, LinuxNamespaceType, MemoryPolicy, MemoryPolicyFlagType,
    MemoryPolicyModeType, MountExtensions, NetDevices, Seccomp, Selinux,
};

use crate::container::OCI_VERSION;

/// Namespaces a container can be given, new or joined.
pub const NAMESPACES: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// Hooks run, in lifecycle order.
pub const HOOKS: [&str; 6] = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// `linux.memoryPolicy.mode` values applied by [`crate::attrs::mempolicy`].
pub const MEMORY_POLICY_MODES: [MemoryPolicyModeType; 7] = [
    MemoryPolicyModeType::MpolDefault,
    MemoryPolicyModeType::MpolBind,
    MemoryPolicyModeType::MpolInterleave,
    MemoryPolicyModeType::MpolWeightedInterleave,
    MemoryPolicyModeType::MpolPreferred,
    MemoryPolicyModeType::MpolPreferredMany,
    MemoryPolicyModeType::MpolLocal,
];

pub const MEMORY_POLICY_FLAGS: [MemoryPolicyFlagType; 3] =
    [MemoryPolicyFlagType::MpolFNumaBalancing, MemoryPolicyFlagType::MpolFRelativeNodes, MemoryPolicyFlagType::MpolFStaticNodes];

/// The document as its typed form.
pub fn features() -> Features {
    let mut caps: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    caps.sort();
    let layout = crate::cgroups::detect().ok();
    let has = |m: crate::cgroups::Mode| layout.is_some_and(|l| l.mode == m);

    let mut cgroup = Cgroup::default();
    cgroup
        .set_v1(Some(has(crate::cgroups::Mode::Legacy) || has(crate::cgroups::Mode::Hybrid)))
        .set_v2(Some(true))
        .set_systemd(Some(false))
        .set_systemd_user(Some(false))
        .set_rdma(Some(false));
    // The seccomp part is built by the compiler's module, as JSON of the same schema.
    let seccomp: Option<Seccomp> = serde_json::from_value(crate::seccomp::features()).ok();
    let enabled = |on: bool| Some(on);
    // The build sets AppArmor profiles and SELinux process labels where the
    // host runs the module (and refuses them where it does not; see `lsm`).
    let mut apparmor = Apparmor::default();
    apparmor.set_enabled(enabled(true));
    let mut selinux = Selinux::default();
    selinux.set_enabled(enabled(true));
    // `linux.intelRdt` is refused (see `intelrdt`).
    let mut rdt = IntelRdt::default();
    rdt.set_enabled(enabled(false));
    let mut mempolicy = MemoryPolicy::default();
    mempolicy
        .set_modes(Some(MEMORY_POLICY_MODES.iter().map(|m| m.to_string()).collect()))
        .set_flags(Some(MEMORY_POLICY_FLAGS.iter().map(|f| f.to_string()).collect()));
    let mut idmap = IDMap::default();
    idmap.set_enabled(enabled(true));
    let mut mount_ext = MountExtensions::default();
    mount_ext.set_idmap(Some(idmap));
    let mut net = NetDevices::default();
    net.set_enabled(enabled(true));

    let mut linux = LinuxFeature::default();
    linux
        .set_namespaces(Some(NAMESPACES.to_vec()))
        .set_capabilities(Some(caps))
        .set_cgroup(Some(cgroup))
        .set_seccomp(seccomp)
        .set_apparmor(Some(apparmor))
        .set_selinux(Some(selinux))
        .set_intel_rdt(Some(rdt))
        .set_memory_policy(Some(mempolicy))
        .set_mount_extensions(Some(mount_ext))
        .set_net_devices(Some(net));

    let mut f = Features::default();
    f.set_oci_version_min("1.0.0".into())
        .set_oci_version_max(OCI_VERSION.into())
        .set_hooks(Some(HOOKS.iter().map(|h| h.to_string()).collect()))
        .set_mount_options(Some(crate::rootfs::options::KNOWN.iter().map(|o| o.to_string()).collect()))
        .set_linux(Some(linux))
        .set_annotations(Some(HashMap::from([(
            "org.opencontainers.runtime-spec.features.roci.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )])));
    f
}

/// The document as `roci features` prints it.
pub fn document() -> serde_json::Value {
    serde_json::to_value(features()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_document_is_complete() {
        let d = document();
        assert_eq!(d["ociVersionMax"], OCI_VERSION);
        let ns = d["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&"user".into()), "{ns:?}");
        assert_eq!(ns.len(), 8);
        assert_eq!(d["linux"]["mountExtensions"]["idmap"]["enabled"], true);
        assert_eq!(d["linux"]["memoryPolicy"]["modes"].as_array().unwrap().len(), 7);
        assert!(d["linux"]["seccomp"]["actions"].as_array().is_some_and(|a| !a.is_empty()), "{d}");
        assert_eq!(d["linux"]["cgroup"]["v2"], true);
    }

    #[test]
    fn features_every_listed_mount_option_is_parsed() {
        // A word the parser does not know would be passed to the filesystem as data.
        for o in crate::rootfs::options::KNOWN {
            let parsed = crate::rootfs::options::parse(&[o.to_string()]);
            assert_eq!(parsed.data, "", "{o} is listed but not understood");
        }
    }

    #[test]
    fn features_every_listed_memory_policy_is_applied() {
        for m in MEMORY_POLICY_MODES {
            // The mode number the module gives the kernel, and the name oci-spec reads back.
            let _ = crate::attrs::mempolicy::mode(m);
            let back: MemoryPolicyModeType = serde_json::from_value(serde_json::json!(m.to_string())).unwrap();
            assert_eq!(back, m);
        }
    }
}
