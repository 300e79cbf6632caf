//! A container of a pod, as containerd 1.6's `containerSpec` and `containerSpecOpts`:
//!
//! - args by kubelet's rules (containerd's `WithProcessArgs`): without `command`, the image's
//!   Entrypoint (unless it is `[""]`) with `args`, or the image's Cmd when `args` is empty too;
//!   with `command`, `command` + `args` and nothing of the image; nothing at all is refused;
//! - env: `PATH` by default, `TERM=xterm` with a tty, `HOSTNAME` (the pod's hostname, else the
//!   node's), then the image's Env and the request's envs, each replacing the same name;
//! - cwd: `working_dir`, else the image's WorkingDir, else `/`;
//! - mounts and devices: see `mounts.rs` and `devices.rs`; masked and readonly paths: exactly
//!   the request's lists (kubelet sends the defaults; an empty list, e.g. for
//!   `procMount: Unmasked`, means none, as containerd does);
//! - capabilities: containerd's defaults, `ALL` in add gives the daemon's full set, `ALL` in drop
//!   empties it, then each add and drop; no ambient capabilities;
//! - privileged (refused unless the pod is privileged): all capabilities, every host device and
//!   all devices allowed, no masked or readonly paths, `/sys` and `/sys/fs/cgroup` writable, no
//!   seccomp or AppArmor;
//! - `noNewPrivileges` only when `no_new_privs`; the root read-only with `readonly_rootfs`;
//! - resources: CPU period, quota, shares, cpuset cpus and mems, memory limit (swap equal to it
//!   when the host accounts swap and no swap limit is given), hugepages (skipped with a warning
//!   when the host has no hugetlb controller, containerd's default
//!   `tolerate_missing_hugetlb_controller`), `unified`; oom_score_adj when resources are given;
//! - cgroup `<pod's cgroup_parent>/<id>`, beside the pause container's;
//! - namespaces: the pod's network, IPC and uts joined; the pod's PID namespace joined unless
//!   the container asks for its own (CONTAINER), another container's with TARGET; a mount
//!   namespace of its own; a cgroup namespace on a cgroup v2 host unless privileged;
//! - user, seccomp, AppArmor, SELinux: see `user.rs` and `security.rs`;
//! - annotations `io.kubernetes.cri.container-type=container`, `sandbox-id`,
//!   `sandbox-namespace`, `sandbox-uid`, `sandbox-name`, `container-name`, `image-name`.
//!
//! Not in the spec, the caller's: `log_path`, `stdin`, `stdin_once` (the monitor), `stop_signal`,
//! `labels`, `annotations` and `image` (the store; containerd passes no request annotation into
//! the spec unless configured to, and roci-cri has no such setting). `CDI_devices` (containerd 1.7
//! and later) are refused as unsupported by this build rather than ignored.

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};
use v1::NamespaceMode;

use super::defaults::{self, merge_env};
use super::mounts::{self, Bind};
use super::pod::{check_userns, ns_mode};
use super::user::{self, Files};
use super::{devices, finish, security, HostFacts, SpecError};

const P: &str = "container.config";

/// The namespaces of the pod's pause container the container joins (e.g.
/// `/proc/<pause pid>/ns/net`, or pinned paths).
#[derive(Debug, Clone)]
pub struct PodNamespaces {
    pub network: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
    pub pid: PathBuf,
}

/// The pod's files on the host that every container gets.
#[derive(Debug, Clone)]
pub struct SandboxFiles {
    /// `/etc/hostname` (containerd skips it for pods made before it had one).
    pub hostname: Option<PathBuf>,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    /// The pod's `/dev/shm`; the host's is used instead with host IPC.
    pub shm: PathBuf,
}

/// What a container's spec needs besides the request, the pod's config and the image.
#[derive(Debug, Clone)]
pub struct ContainerInputs<'a> {
    pub id: &'a str,
    pub sandbox_id: &'a str,
    /// The image as the request names it (the `image-name` annotation).
    pub image_name: &'a str,
    /// The container's root filesystem, ready: `root.path`; its passwd and group are read.
    pub rootfs: &'a Path,
    pub pod_namespaces: &'a PodNamespaces,
    /// With `namespace_options.pid` TARGET: the PID namespace of the container `target_id` names
    /// (the caller looks it up and checks it is in the same pod).
    pub target_pid_namespace: Option<&'a Path>,
    pub sandbox_files: &'a SandboxFiles,
    /// Where the image's volumes get their host directories (`<dir>/<n>`).
    pub volumes_dir: &'a Path,
    /// The directory Localhost seccomp profiles must be in.
    pub seccomp_profile_dir: &'a Path,
}

/// An image volume: a host directory the caller creates (and fills with the image's content
/// at that path, as containerd's `WithVolumes` does) before the container is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVolume {
    pub container_path: String,
    pub host_path: PathBuf,
}

/// A container's spec and what the caller must prepare for it.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub spec: Spec,
    pub image_volumes: Vec<ImageVolume>,
    /// Mount sources that do not exist: containerd creates them (mode 0755); so must the caller.
    pub host_dirs: Vec<PathBuf>,
}

/// containerd's `WithProcessArgs` (kubelet's command/args rules, see the module docs).
pub fn process_args(command: &[String], args: &[String], image: &oci_spec::image::Config) -> Result<Vec<String>, SpecError> {
    let mut command = command.to_vec();
    let mut args = args.to_vec();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd().clone().unwrap_or_default();
        }
        let entrypoint = image.entrypoint().clone().unwrap_or_default();
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    let all: Vec<String> = command.into_iter().chain(args).collect();
    if all.is_empty() {
        return Err(SpecError::invalid(format!("{P}.command"), "no command: neither the request nor the image gives one"));
    }
    if all[0].is_empty() {
        return Err(SpecError::invalid(format!("{P}.command"), "the program to run is an empty string"));
    }
    Ok(all)
}

/// containerd's `WithCapabilities` (see the module docs); returns the bounding set.
pub fn capabilities(caps: Option<&v1::Capability>, all: &[String], field: &str) -> Result<Vec<String>, SpecError> {
    let mut set: Vec<String> = defaults::DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).collect();
    let Some(caps) = caps else { return Ok(set) };
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(SpecError::unsupported(
            format!("{field}.add_ambient_capabilities"),
            "ambient capabilities are not supported by this build",
        ));
    }
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    if caps.add_capabilities.iter().any(is_all) {
        set = all.to_vec();
    }
    if caps.drop_capabilities.iter().any(is_all) {
        set.clear();
    }
    let name = |c: &str, list: &str, i: usize| {
        let up = c.to_ascii_uppercase();
        let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
        if defaults::known_cap(&full) {
            Ok(full)
        } else {
            Err(SpecError::invalid(format!("{field}.{list}[{i}]"), format!("{c:?} is not a capability")))
        }
    };
    for (i, c) in caps.add_capabilities.iter().enumerate().filter(|(_, c)| !is_all(c)) {
        let c = name(c, "add_capabilities", i)?;
        if !set.contains(&c) {
            set.push(c);
        }
    }
    for (i, c) in caps.drop_capabilities.iter().enumerate().filter(|(_, c)| !is_all(c)) {
        let c = name(c, "drop_capabilities", i)?;
        set.retain(|x| *x != c);
    }
    Ok(set)
}

/// containerd's `WithResources` and `WithOOMScoreAdj` (see the module docs).
pub fn resources(s: &mut Value, r: &v1::LinuxContainerResources, host: &HostFacts, field: &str) -> Result<(), SpecError> {
    let non_negative = |v: i64, name: &str| {
        u64::try_from(v).map_err(|_| SpecError::invalid(format!("{field}.{name}"), format!("{v} is negative")))
    };
    let mut cpu = serde_json::Map::new();
    if r.cpu_period != 0 {
        cpu.insert("period".into(), json!(non_negative(r.cpu_period, "cpu_period")?));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_shares != 0 {
        cpu.insert("shares".into(), json!(non_negative(r.cpu_shares, "cpu_shares")?));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    if !cpu.is_empty() {
        s["linux"]["resources"]["cpu"] = Value::Object(cpu);
    }
    let mut memory = serde_json::Map::new();
    if r.memory_limit_in_bytes != 0 {
        non_negative(r.memory_limit_in_bytes, "memory_limit_in_bytes")?;
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
        if r.memory_swap_limit_in_bytes == 0 && host.swap_controller {
            memory.insert("swap".into(), json!(r.memory_limit_in_bytes));
        }
    }
    if r.memory_swap_limit_in_bytes != 0 {
        if host.swap_controller {
            memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
        } else {
            tracing::warn!(
                swap = r.memory_swap_limit_in_bytes,
                "the host does not account swap: memory_swap_limit_in_bytes not applied"
            );
        }
    }
    if !memory.is_empty() {
        s["linux"]["resources"]["memory"] = Value::Object(memory);
    }
    if !r.hugepage_limits.is_empty() {
        if host.hugetlb_controller {
            let limits: Vec<Value> =
                r.hugepage_limits.iter().map(|h| json!({ "pageSize": h.page_size, "limit": h.limit })).collect();
            s["linux"]["resources"]["hugepageLimits"] = json!(limits);
        } else {
            tracing::warn!("the host has no hugetlb controller: hugepage_limits not applied");
        }
    }
    if !r.unified.is_empty() {
        s["linux"]["resources"]["unified"] = json!(r.unified);
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(SpecError::invalid(format!("{field}.oom_score_adj"), format!("{} is not in -1000..=1000", r.oom_score_adj)));
    }
    s["process"]["oomScoreAdj"] = json!(host.oom_score_adj(r.oom_score_adj as i32));
    Ok(())
}

/// The container's spec (see the module docs).
pub fn container_spec(
    config: &v1::ContainerConfig,
    sandbox: &v1::PodSandboxConfig,
    image: &ImageConfiguration,
    inputs: &ContainerInputs<'_>,
    host: &HostFacts,
) -> Result<ContainerSpec, SpecError> {
    let scf = format!("{P}.linux.security_context");
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let nsf = format!("{scf}.namespace_options");
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let pid_mode = ns_mode(ns.pid, &format!("{nsf}.pid"))?;
    let ipc_mode = ns_mode(ns.ipc, &format!("{nsf}.ipc"))?;
    ns_mode(ns.network, &format!("{nsf}.network"))?;
    check_userns(&ns, &nsf)?;
    if !config.cdi_devices.is_empty() {
        return Err(SpecError::unsupported(format!("{P}.CDI_devices"), "CDI devices are not supported by this build"));
    }
    let cfg = image.config().clone().unwrap_or_default();
    let pod_sc = sandbox.linux.as_ref().and_then(|l| l.security_context.clone()).unwrap_or_default();

    let mut s = defaults::base(inputs.rootfs);
    s["process"]["args"] = json!(process_args(&config.command, &config.args, &cfg)?);
    let mut env = vec![defaults::DEFAULT_PATH_ENV.to_owned()];
    s["process"]["noNewPrivileges"] = json!(false);
    let cwd = if !config.working_dir.is_empty() {
        if !config.working_dir.starts_with('/') {
            return Err(SpecError::invalid(format!("{P}.working_dir"), format!("{:?} is not absolute", config.working_dir)));
        }
        config.working_dir.clone()
    } else {
        cfg.working_dir().clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".to_owned())
    };
    s["process"]["cwd"] = json!(cwd);
    if config.tty {
        s["process"]["terminal"] = json!(true);
        env.push("TERM=xterm".to_owned());
    }
    let hostname = if sandbox.hostname.is_empty() { &host.hostname } else { &sandbox.hostname };
    merge_env(&mut env, &[format!("HOSTNAME={hostname}")]);
    let mut overrides: Vec<String> = cfg.env().clone().unwrap_or_default();
    for (i, e) in config.envs.iter().enumerate() {
        if e.key.is_empty() || e.key.contains('=') {
            return Err(SpecError::invalid(format!("{P}.envs[{i}].key"), format!("{:?} is not a variable name", e.key)));
        }
        overrides.push(format!("{}={}", e.key, String::from_utf8_lossy(&e.value)));
    }
    merge_env(&mut env, &overrides);
    s["process"]["env"] = json!(env);

    security::selinux(sc.selinux_options.as_ref(), host, &format!("{scf}.selinux_options"))?;

    // Mounts: the request's, then the pod's files and the image's volumes.
    let files = inputs.sandbox_files;
    let ro = sc.readonly_rootfs;
    let bind = |dest: &str, src: &Path, readonly: bool, what: &str| Bind {
        container_path: dest.to_owned(),
        host_path: src.to_owned(),
        readonly,
        propagation: v1::MountPropagation::PropagationPrivate,
        recursive_readonly: false,
        selinux_relabel: false,
        field: what.to_owned(),
    };
    let mut extra = Vec::new();
    if let Some(h) = &files.hostname {
        extra.push(bind(defaults::ETC_HOSTNAME, h, ro, "the pod's hostname file"));
    }
    extra.push(bind(defaults::ETC_HOSTS, &files.hosts, ro, "the pod's hosts file"));
    extra.push(bind(defaults::RESOLV_CONF, &files.resolv_conf, ro, "the pod's resolv.conf"));
    let shm = if ipc_mode == NamespaceMode::Node { Path::new(defaults::DEV_SHM) } else { files.shm.as_path() };
    extra.push(bind(defaults::DEV_SHM, shm, false, "the pod's /dev/shm"));
    let mut image_volumes = Vec::new();
    let mut volumes: Vec<String> = cfg.volumes().clone().unwrap_or_default();
    volumes.sort();
    volumes.dedup();
    for (n, dest) in volumes.iter().enumerate() {
        if mounts::in_cri_mounts(dest, &config.mounts) {
            continue;
        }
        let dest = if dest.starts_with('/') { dest.clone() } else { format!("/{dest}") };
        let host_path = inputs.volumes_dir.join(n.to_string());
        extra.push(bind(&dest, &host_path, false, "an image volume"));
        image_volumes.push(ImageVolume { container_path: dest, host_path });
    }
    let requested = mounts::from_request(&config.mounts, P, host.selinux)?;
    let mut host_dirs =
        mounts::apply(&mut s, requested, extra, &|| std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())?;
    host_dirs.retain(|d| !image_volumes.iter().any(|v| &v.host_path == d));

    s["linux"]["maskedPaths"] = json!(sc.masked_paths);
    s["linux"]["readonlyPaths"] = json!(sc.readonly_paths);
    devices::add(&mut s, &config.devices, P)?;
    let mut caps = capabilities(sc.capabilities.as_ref(), &host.all_caps, &format!("{scf}.capabilities"))?;
    if sc.privileged {
        if !pod_sc.privileged {
            return Err(SpecError::invalid(
                format!("{scf}.privileged"),
                "no privileged container is allowed in a pod that is not privileged",
            ));
        }
        caps = host.all_caps.clone();
        if let Some(linux) = s["linux"].as_object_mut() {
            linux.remove("maskedPaths");
            linux.remove("readonlyPaths");
        }
        for m in s["mounts"].as_array_mut().into_iter().flatten() {
            if m["type"] == "sysfs" || m["type"] == "cgroup" {
                for o in m["options"].as_array_mut().into_iter().flatten() {
                    if o == "ro" {
                        *o = json!("rw");
                    }
                }
            }
        }
        devices::add_host_devices(&mut s)?;
    }
    s["process"]["capabilities"] = json!({ "bounding": caps, "permitted": caps, "effective": caps });
    if sc.no_new_privs {
        s["process"]["noNewPrivileges"] = json!(true);
    }
    if sc.readonly_rootfs {
        s["root"]["readonly"] = json!(true);
    }
    if let Some(r) = &linux.resources {
        resources(&mut s, r, host, &format!("{P}.linux.resources"))?;
    }
    let parent = sandbox.linux.as_ref().map(|l| l.cgroup_parent.as_str()).unwrap_or("");
    s["linux"]["cgroupsPath"] = json!(defaults::cgroups_path(parent, inputs.id, "sandbox_config.linux.cgroup_parent")?);

    let pod = inputs.pod_namespaces;
    defaults::set_namespace(&mut s, "network", Some(&pod.network));
    defaults::set_namespace(&mut s, "ipc", Some(&pod.ipc));
    defaults::set_namespace(&mut s, "uts", Some(&pod.uts));
    match pid_mode {
        NamespaceMode::Container => {}
        NamespaceMode::Target => {
            let target = inputs.target_pid_namespace.ok_or_else(|| {
                SpecError::invalid(
                    format!("{nsf}.target_id"),
                    format!("{:?} is not a running container of the pod", ns.target_id),
                )
            })?;
            defaults::set_namespace(&mut s, "pid", Some(target));
        }
        NamespaceMode::Pod | NamespaceMode::Node => defaults::set_namespace(&mut s, "pid", Some(&pod.pid)),
    }
    if host.cgroup_v2 && !sc.privileged {
        defaults::set_namespace(&mut s, "cgroup", None);
    }

    let meta = sandbox.metadata.clone().unwrap_or_default();
    let name = config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    let ann = defaults::annotations(&[
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-id", inputs.sandbox_id),
        ("io.kubernetes.cri.sandbox-namespace", &meta.namespace),
        ("io.kubernetes.cri.sandbox-uid", &meta.uid),
        ("io.kubernetes.cri.sandbox-name", &meta.name),
        ("io.kubernetes.cri.container-name", name),
        ("io.kubernetes.cri.image-name", inputs.image_name),
    ]);
    s["annotations"] = Value::Object(ann);

    // The user, its groups (containerSpecOpts).
    let userstr = user::user_string(&sc.run_as_username, sc.run_as_user.as_ref(), sc.run_as_group.as_ref(), &scf)?;
    let image_user = cfg.user().clone().unwrap_or_default();
    let (userstr, what) = if userstr.is_empty() {
        (image_user.clone(), "the image's User".to_owned())
    } else if sc.run_as_username.is_empty() {
        (userstr, format!("{scf}.run_as_user"))
    } else {
        (userstr, format!("{scf}.run_as_username"))
    };
    let files = Files::read(inputs.rootfs)?;
    let (uid, gid) = user::resolve(&userstr, &files, &what)?;
    let member_of = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(u) = &sc.run_as_user {
        u.value.to_string()
    } else if !image_user.is_empty() {
        image_user.split(':').next().unwrap_or("").to_owned()
    } else {
        "0".to_owned()
    };
    let strict = sc.supplemental_groups_policy == v1::SupplementalGroupsPolicy::Strict as i32;
    let members = if strict { Vec::new() } else { user::member_gids(&member_of, &files) };
    let supplemental = user::supplemental(&sc.supplemental_groups, &format!("{scf}.supplemental_groups"))?;
    let additional = user::merge(&user::merge(&[gid], &members), &supplemental);
    s["process"]["user"] = json!({ "uid": uid, "gid": gid, "additionalGids": additional });

    let asked = security::Asked {
        seccomp: sc.seccomp.as_ref(),
        seccomp_profile_path: legacy_seccomp(&sc),
        apparmor: sc.apparmor.as_ref(),
        apparmor_profile: legacy_apparmor(&sc),
        privileged: sc.privileged,
    };
    security::apply(&mut s, &asked, &scf, host, &caps, inputs.seccomp_profile_dir)?;
    let spec = finish(s, inputs.rootfs)?;
    Ok(ContainerSpec { spec, image_volumes, host_dirs })
}

#[allow(deprecated)]
fn legacy_seccomp(sc: &v1::LinuxContainerSecurityContext) -> &str {
    &sc.seccomp_profile_path
}

#[allow(deprecated)]
fn legacy_apparmor(sc: &v1::LinuxContainerSecurityContext) -> &str {
    &sc.apparmor_profile
}
