//! CRI configurations turned into OCI runtime specs (`config.json`), as containerd 1.6's CRI
//! plugin builds them: [`pod_spec`] for a pod's infra (pause) container, [`container_spec`] for
//! each container of the pod. Users of Kubernetes expect containerd's results, so each rule below
//! names the containerd behaviour it follows, and every place where roci-cri differs says so.
//!
//! - [`defaults`]: the base spec (mounts, capabilities, masked and readonly paths, namespaces,
//!   PATH) and the cgroup path rule.
//! - [`pod`]: the pause container: hostname, the pod's namespaces, sysctls, `/dev/shm` and
//!   `resolv.conf`, the pod's security context.
//! - [`container`]: command and args against the image's Entrypoint and Cmd, env, working dir,
//!   joining the pod's namespaces, capabilities, privileged, resources, annotations.
//! - [`mounts`] and [`devices`]: CRI mounts (propagation, readonly, the pod's files, image
//!   volumes) and devices (one node, a directory of them, or every host device when privileged).
//! - [`user`]: `run_as_user`/`run_as_username`/`run_as_group`/the image's `User`, resolved through
//!   the image's `/etc/passwd` and `/etc/group`, read inside the rootfs without following a
//!   symlink out of it.
//! - [`security`]: seccomp (RuntimeDefault is containerd's default profile,
//!   `seccomp_default.json`), AppArmor and SELinux on hosts with and without those modules.
//!
//! Everything here is a pure function of the request, the image's config and the
//! [`HostFacts`]/inputs the caller gives, except reading files it must read as containerd does
//! (the image's passwd and group files, a Localhost seccomp profile, device nodes, mountinfo for
//! propagation checks). Nothing is created or mounted: what the caller must create first is
//! returned ([`ContainerSpec::host_dirs`], [`ContainerSpec::image_volumes`]).
//!
//! The result is checked with roci's own validation ([`libcontainer::spec::validate`]), so a
//! spec that roci would refuse is refused here, naming the field, before anything is created.

pub mod container;
pub mod defaults;
pub mod devices;
pub mod mounts;
pub mod pod;
pub mod security;
pub mod user;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::Value;

pub use container::{container_spec, ContainerInputs, ContainerSpec, ImageVolume, PodNamespaces, SandboxFiles};
pub use pod::{pod_spec, PodInputs};

/// Why a CRI configuration cannot become a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The request asks for something malformed or contradictory; `field` is its path in the
    /// request, e.g. `container.config.linux.security_context.seccomp.localhost_ref`.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The request is well formed but this host or build cannot honour it (an LSM the host
    /// lacks, a CRI feature this build does not implement); `field` as for `Invalid`.
    #[error("{field}: {reason}")]
    Unsupported { field: String, reason: String },
    /// The image's configuration cannot run (e.g. a pause image without Entrypoint or Cmd).
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    /// A host file the conversion reads could not be read.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    /// roci's own validation refused the produced spec; `field` is the config.json field.
    #[error("the produced config.json is refused by roci: {0}")]
    Rejected(#[source] libcontainer::spec::Error),
}

impl SpecError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
        SpecError::Invalid { field: field.into(), reason: reason.into() }
    }
    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
        SpecError::Unsupported { field: field.into(), reason: reason.into() }
    }
}

impl From<SpecError> for tonic::Status {
    fn from(e: SpecError) -> tonic::Status {
        let msg = e.to_string();
        match e {
            SpecError::Invalid { .. } | SpecError::Rejected(_) => tonic::Status::invalid_argument(msg),
            SpecError::Unsupported { .. } | SpecError::Image { .. } => tonic::Status::failed_precondition(msg),
            SpecError::Io { .. } => tonic::Status::internal(msg),
        }
    }
}

/// What the conversion needs to know about the host, detected once when the daemon starts
/// ([`HostFacts::detect`]); tests build it by hand.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The node's hostname: a container's `HOSTNAME` when the pod gives none.
    pub hostname: String,
    /// `major.minor` of the running kernel (containerd's default seccomp profile allows
    /// `ptrace` from 4.8 on).
    pub kernel: (u32, u32),
    /// Whether the kernel has seccomp.
    pub seccomp: bool,
    pub apparmor: bool,
    /// On an AppArmor host, the loaded profile a `RuntimeDefault` AppArmor profile means: the
    /// one [`crate::apparmor::ensure_default`] loaded or checked at startup (roci-cri's own,
    /// as containerd loads `cri-containerd.apparmor.d`), `None` when the configuration names
    /// none, and then `RuntimeDefault` is refused on such a host.
    pub apparmor_default_profile: Option<String>,
    pub selinux: bool,
    /// The memory controller accounts swap (`memory.memsw.limit_in_bytes` on v1,
    /// `memory.swap.max` on v2).
    pub swap_controller: bool,
    /// The hugetlb controller is present.
    pub hugetlb_controller: bool,
    /// cgroup v2 only (unified): containers get a cgroup namespace, as containerd does.
    pub cgroup_v2: bool,
    /// The capabilities privileged containers and `add_capabilities: ["ALL"]` get: the daemon's
    /// own bounding set, as containerd takes its current capabilities.
    pub all_caps: Vec<String>,
    /// containerd's `restrict_oom_score_adj` (off by default): when set to the daemon's own
    /// oom_score_adj, no container gets a lower one (for daemons that may not lower it, e.g.
    /// in a user namespace or without CAP_SYS_RESOURCE).
    pub oom_score_adj_floor: Option<i32>,
}

impl HostFacts {
    /// An oom_score_adj raised to [`HostFacts::oom_score_adj_floor`] when one is set.
    pub fn oom_score_adj(&self, adj: i32) -> i32 {
        self.oom_score_adj_floor.map_or(adj, |floor| adj.max(floor))
    }
}

impl HostFacts {
    /// Detect the facts of the running host.
    pub fn detect() -> HostFacts {
        let uname = nix::sys::utsname::uname().ok();
        let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
        let kernel = uname
            .as_ref()
            .and_then(|u| u.release().to_str())
            .map(|r| {
                let mut it = r.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
                let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                (major, minor)
            })
            .unwrap_or((0, 0));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let seccomp = status.lines().any(|l| l.starts_with("Seccomp:"));
        let cap_bnd = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let cgroup_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        let (swap_controller, hugetlb_controller) = if cgroup_v2 {
            let own = std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|c| c.lines().find_map(|l| l.strip_prefix("0::").map(str::to_owned)))
                .unwrap_or_else(|| "/".into());
            let dir = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
            let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
            (dir.join("memory.swap.max").exists(), controllers.split_whitespace().any(|c| c == "hugetlb"))
        } else {
            (
                Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
                Path::new("/sys/fs/cgroup/hugetlb").is_dir(),
            )
        };
        HostFacts {
            hostname,
            kernel,
            seccomp,
            apparmor: libcontainer::lsm::apparmor_enabled(),
            apparmor_default_profile: None,
            selinux: libcontainer::lsm::selinux_enabled(),
            swap_controller,
            hugetlb_controller,
            cgroup_v2,
            all_caps: defaults::caps_from_mask(cap_bnd),
            oom_score_adj_floor: None,
        }
    }
}

/// Turn the built JSON into a typed spec and run roci's validation on it (the rootfs, namespace
/// paths and LSM facts are checked against this host).
fn finish(spec: Value, rootfs: &Path) -> Result<Spec, SpecError> {
    let data = serde_json::to_vec(&spec).map_err(|e| SpecError::Io {
        op: "serialize the spec for",
        path: rootfs.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let config = rootfs.parent().unwrap_or(rootfs).join("config.json");
    let spec = libcontainer::spec::parse(&config, &data).map_err(SpecError::Rejected)?;
    libcontainer::spec::validate(&config, rootfs.parent().unwrap_or(rootfs), &spec).map_err(SpecError::Rejected)?;
    Ok(spec)
}

#[cfg(test)]
mod tests;
