//! The pod's infra (pause) container, as containerd 1.6's `sandboxContainerSpec` and
//! `sandboxContainerSpecOpts`:
//!
//! - the pause image's Entrypoint + Cmd, Env (no default PATH is added), WorkingDir; the root
//!   filesystem read-only; the pod's hostname;
//! - namespaces: pid, ipc, uts, mount, and the network namespace the caller made (CNI); host
//!   network drops network and uts, host PID drops pid, host IPC drops ipc;
//! - `/dev/shm`: the pod's own shm directory, or the host's with host IPC, bound read-only (its
//!   files are written through the containers' read-write binds); `/etc/resolv.conf` bound
//!   read-only; containerd's default masked and readonly paths, default capabilities,
//!   `noNewPrivileges`;
//! - the pod's sysctls: only namespaced ones, and only those whose namespace the pod owns (host
//!   network refuses `net.*`, host IPC refuses the IPC ones), refused here naming the key
//!   (containerd passes them on and runc refuses them);
//! - cgroup `<cgroup_parent>/<id>` with 2 CPU shares; oom_score_adj -998 (or the floor of
//!   [`HostFacts::oom_score_adj_floor`]);
//! - `linux.resources` only as the `io.kubernetes.cri.sandbox-*` annotations, as containerd
//!   (kubelet sizes the pod's cgroup itself); `linux.overhead` is kubelet's accounting of the
//!   pod's cgroup and containerd 1.6 does not read it either;
//! - user from `run_as_user`/`run_as_group` or the image's `User`; `supplemental_groups` as
//!   additional gids (containerd's `WithUser` replaces them with the primary gid when a user is
//!   given, and so does this);
//! - seccomp and AppArmor (see `security.rs`; containerd 1.6 ignores the pod's AppArmor field,
//!   roci-cri applies it as it does a container's rather than drop it); a privileged pod only
//!   skips seccomp, as containerd's pause container does.
//!
//! Not in the spec, the caller's: `dns_config` (the resolv.conf it writes), `port_mappings` (CNI),
//! `labels` and `annotations` (the store), `linux.security_context.readonly_rootfs` (the pause's
//! root is always read-only).

use std::path::Path;

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use roci_cri_proto::runtime_v1 as v1;
use serde_json::json;
use v1::NamespaceMode;

use super::defaults::{self, merge_env};
use super::security;
use super::user::{self, Files};
use super::{finish, HostFacts, SpecError};

const P: &str = "sandbox.config";

/// What the pause container's spec needs besides the request and the image.
#[derive(Debug, Clone)]
pub struct PodInputs<'a> {
    /// The sandbox id: the cgroup's name and the `sandbox-id` annotation.
    pub id: &'a str,
    /// The image reference, for errors about its configuration.
    pub image_name: &'a str,
    /// The pause image's root filesystem, ready: `root.path`; its passwd and group are read.
    pub rootfs: &'a Path,
    /// The pod's network namespace (e.g. a pinned `/run/netns/...`); required unless the pod
    /// uses the host network, ignored then.
    pub netns: Option<&'a Path>,
    /// The pod's `/dev/shm` on the host (a tmpfs the caller mounts); unused with host IPC.
    pub shm: &'a Path,
    /// The pod's resolv.conf on the host.
    pub resolv_conf: &'a Path,
    /// The directory Localhost seccomp profiles must be in.
    pub seccomp_profile_dir: &'a Path,
}

/// A namespace mode of the request.
pub(crate) fn ns_mode(v: i32, field: &str) -> Result<NamespaceMode, SpecError> {
    NamespaceMode::try_from(v).map_err(|_| SpecError::invalid(field, format!("unknown namespace mode {v}")))
}

/// User namespaces are not in this build: asking for one is refused, never ignored.
pub(crate) fn check_userns(ns: &v1::NamespaceOption, field: &str) -> Result<(), SpecError> {
    if let Some(u) = &ns.userns_options {
        let mode = ns_mode(u.mode, &format!("{field}.userns_options.mode"))?;
        if mode != NamespaceMode::Node || !u.uids.is_empty() || !u.gids.is_empty() {
            return Err(SpecError::unsupported(
                format!("{field}.userns_options"),
                "user namespaces are not supported by this build",
            ));
        }
    }
    Ok(())
}

/// A sysctl the pod may set: namespaced, with its namespace the pod's own (roci's rule, checked
/// here to name the request's field and mode).
fn check_sysctl(key: &str, private_net: bool, private_ipc: bool) -> Result<(), String> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    let mut own: std::collections::HashSet<T> = [T::Mount, T::Pid].into();
    if private_net {
        own.extend([T::Network, T::Uts]);
    }
    if private_ipc {
        own.insert(T::Ipc);
    }
    libcontainer::spec::check_sysctl(key, &own).map_err(|reason| {
        let node = match (private_net, private_ipc) {
            _ if !reason.starts_with("needs") => "",
            (false, false) => " (namespace_options.network and ipc are NODE)",
            (false, true) => " (namespace_options.network is NODE)",
            (true, false) => " (namespace_options.ipc is NODE)",
            (true, true) => "",
        };
        format!("{reason}{node}")
    })
}

/// The pause container's spec (see the module docs).
pub fn pod_spec(
    config: &v1::PodSandboxConfig,
    image: &ImageConfiguration,
    inputs: &PodInputs<'_>,
    host: &HostFacts,
) -> Result<Spec, SpecError> {
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let nsf = format!("{P}.linux.security_context.namespace_options");
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let network = ns_mode(ns.network, &format!("{nsf}.network"))?;
    let pid = ns_mode(ns.pid, &format!("{nsf}.pid"))?;
    let ipc = ns_mode(ns.ipc, &format!("{nsf}.ipc"))?;
    for (mode, name) in [(network, "network"), (pid, "pid"), (ipc, "ipc")] {
        if mode == NamespaceMode::Target || (mode == NamespaceMode::Container && name != "pid") {
            return Err(SpecError::invalid(
                format!("{nsf}.{name}"),
                format!("{} is not a pod namespace mode", mode.as_str_name()),
            ));
        }
    }
    check_userns(&ns, &nsf)?;
    let img_err = |reason: String| SpecError::Image { image: inputs.image_name.to_owned(), reason };
    let cfg = image.config().clone().unwrap_or_default();

    let mut s = defaults::base(inputs.rootfs);
    let mut env = Vec::new();
    merge_env(&mut env, cfg.env().as_deref().unwrap_or_default());
    s["process"]["env"] = json!(env);
    s["root"]["readonly"] = json!(true);
    if !config.hostname.is_empty() {
        if network == NamespaceMode::Node {
            return Err(SpecError::invalid(
                format!("{P}.hostname"),
                "a pod on the host network has the node's hostname (kubelet sends none for such pods)",
            ));
        }
        s["hostname"] = json!(config.hostname);
    }
    if let Some(wd) = cfg.working_dir().as_deref().filter(|w| !w.is_empty()) {
        if !wd.starts_with('/') {
            return Err(img_err(format!("WorkingDir {wd:?} is not absolute")));
        }
        s["process"]["cwd"] = json!(wd);
    }
    let args: Vec<String> = cfg.entrypoint().iter().flatten().chain(cfg.cmd().iter().flatten()).cloned().collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(img_err("the pause image has neither Entrypoint nor Cmd".into()));
    }
    s["process"]["args"] = json!(args);
    s["linux"]["cgroupsPath"] =
        json!(defaults::cgroups_path(&linux.cgroup_parent, inputs.id, &format!("{P}.linux.cgroup_parent"))?);

    if network == NamespaceMode::Node {
        defaults::remove_namespace(&mut s, "network");
        defaults::remove_namespace(&mut s, "uts");
    } else {
        let netns = inputs
            .netns
            .ok_or_else(|| SpecError::invalid(format!("{nsf}.network"), "the pod's network namespace is not ready"))?;
        defaults::set_namespace(&mut s, "network", Some(netns));
    }
    if pid == NamespaceMode::Node {
        defaults::remove_namespace(&mut s, "pid");
    }
    if ipc == NamespaceMode::Node {
        defaults::remove_namespace(&mut s, "ipc");
    }

    let shm = if ipc == NamespaceMode::Node { Path::new(defaults::DEV_SHM) } else { inputs.shm };
    if let Some(mounts) = s["mounts"].as_array_mut() {
        // containerd appends this bind over the default /dev/shm tmpfs; replacing it gives the
        // same /dev/shm with one mount less.
        mounts.retain(|m| m["destination"] != defaults::DEV_SHM);
        mounts.push(json!({ "destination": defaults::DEV_SHM, "type": "bind", "source": shm, "options": ["rbind", "ro"] }));
        mounts.push(json!({ "destination": defaults::RESOLV_CONF, "type": "bind", "source": inputs.resolv_conf, "options": ["rbind", "ro"] }));
    }

    let scf = format!("{P}.linux.security_context");
    security::selinux(sc.selinux_options.as_ref(), host, &format!("{scf}.selinux_options"))?;
    let supplemental = user::supplemental(&sc.supplemental_groups, &format!("{scf}.supplemental_groups"))?;

    let mut sysctls = serde_json::Map::new();
    for (k, v) in &linux.sysctls {
        check_sysctl(k, network != NamespaceMode::Node, ipc != NamespaceMode::Node)
            .map_err(|reason| SpecError::invalid(format!("{P}.linux.sysctls[{k:?}]"), reason))?;
        sysctls.insert(k.clone(), json!(v));
    }
    if !sysctls.is_empty() {
        s["linux"]["sysctl"] = serde_json::Value::Object(sysctls);
    }
    s["linux"]["resources"]["cpu"] = json!({ "shares": defaults::SANDBOX_CPU_SHARES });
    s["process"]["oomScoreAdj"] = json!(host.oom_score_adj(defaults::SANDBOX_OOM_SCORE_ADJ));

    let meta = config.metadata.clone().unwrap_or_default();
    let mut ann = defaults::annotations(&[
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.cri.sandbox-id", inputs.id),
        ("io.kubernetes.cri.sandbox-namespace", &meta.namespace),
        ("io.kubernetes.cri.sandbox-uid", &meta.uid),
        ("io.kubernetes.cri.sandbox-name", &meta.name),
        ("io.kubernetes.cri.sandbox-log-directory", &config.log_directory),
    ]);
    if let Some(r) = &linux.resources {
        ann.insert("io.kubernetes.cri.sandbox-cpu-period".into(), json!(r.cpu_period.to_string()));
        ann.insert("io.kubernetes.cri.sandbox-cpu-quota".into(), json!(r.cpu_quota.to_string()));
        ann.insert("io.kubernetes.cri.sandbox-cpu-shares".into(), json!(r.cpu_shares.to_string()));
        ann.insert("io.kubernetes.cri.sandbox-memory".into(), json!(r.memory_limit_in_bytes.to_string()));
    }
    s["annotations"] = serde_json::Value::Object(ann);

    // The user: containerd's WithUser replaces the additional gids (then adds the primary gid).
    let userstr = user::user_string("", sc.run_as_user.as_ref(), sc.run_as_group.as_ref(), &scf)?;
    let (userstr, what) = if userstr.is_empty() {
        (cfg.user().clone().unwrap_or_default(), "the pause image's User".to_owned())
    } else {
        (userstr, format!("{scf}.run_as_user"))
    };
    let mut additional = user::merge(&[], &supplemental);
    if !userstr.is_empty() {
        let files = Files::read(inputs.rootfs)?;
        let (uid, gid) = user::resolve(&userstr, &files, &what)?;
        s["process"]["user"]["uid"] = json!(uid);
        s["process"]["user"]["gid"] = json!(gid);
        additional = vec![gid];
    }
    if !additional.is_empty() {
        s["process"]["user"]["additionalGids"] = json!(additional);
    }

    let asked = security::Asked {
        seccomp: sc.seccomp.as_ref(),
        seccomp_profile_path: sc_legacy_seccomp(&sc),
        apparmor: sc.apparmor.as_ref(),
        apparmor_profile: "",
        privileged: sc.privileged,
    };
    let bounding: Vec<String> = defaults::DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).collect();
    security::apply(&mut s, &asked, &scf, host, &bounding, inputs.seccomp_profile_dir)?;
    finish(s, inputs.rootfs)
}

#[allow(deprecated)]
fn sc_legacy_seccomp(sc: &v1::LinuxSandboxSecurityContext) -> &str {
    &sc.seccomp_profile_path
}
