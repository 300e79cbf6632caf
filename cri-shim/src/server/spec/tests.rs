//! One test per rule of the conversion, on prost requests built directly and a temp rootfs.

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};
use tempfile::TempDir;
use v1::security_profile::ProfileType;

use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwww-data:x:34:\nbob:x:1000:bob\nstaff:x:50:bob,alice\naudio:x:29:bob\n";

/// A bundle with a rootfs holding passwd and group, the pod's files, a seccomp directory.
struct Fixture {
    dir: TempDir,
    ns: PodNamespaces,
    files: SandboxFiles,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new().unwrap();
        let etc = dir.path().join("bundle/rootfs/etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("passwd"), PASSWD).unwrap();
        std::fs::write(etc.join("group"), GROUP).unwrap();
        std::fs::create_dir_all(dir.path().join("seccomp")).unwrap();
        std::fs::create_dir_all(dir.path().join("pod/shm")).unwrap();
        for f in ["hosts", "resolv.conf", "hostname"] {
            std::fs::write(dir.path().join("pod").join(f), "").unwrap();
        }
        let pod = dir.path().join("pod");
        let files = SandboxFiles {
            hostname: Some(pod.join("hostname")),
            hosts: pod.join("hosts"),
            resolv_conf: pod.join("resolv.conf"),
            shm: pod.join("shm"),
        };
        let ns = PodNamespaces {
            network: "/proc/self/ns/net".into(),
            ipc: "/proc/self/ns/ipc".into(),
            uts: "/proc/self/ns/uts".into(),
            pid: "/proc/self/ns/pid".into(),
        };
        Fixture { dir, ns, files }
    }
    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("bundle/rootfs")
    }
    fn seccomp_dir(&self) -> PathBuf {
        self.dir.path().join("seccomp")
    }
    fn pod(&self, config: &v1::PodSandboxConfig, image: &ImageConfiguration) -> Result<Spec, SpecError> {
        let rootfs = self.rootfs();
        let (shm, resolv, seccomp) = (self.files.shm.clone(), self.files.resolv_conf.clone(), self.seccomp_dir());
        let inputs = PodInputs {
            id: "pod1",
            image_name: "pause:test",
            rootfs: &rootfs,
            netns: Some(Path::new("/proc/self/ns/net")),
            shm: &shm,
            resolv_conf: &resolv,
            seccomp_profile_dir: &seccomp,
        };
        pod_spec(config, image, &inputs, &host())
    }
    fn container_with(
        &self,
        config: &v1::ContainerConfig,
        sandbox: &v1::PodSandboxConfig,
        image: &ImageConfiguration,
        host: &HostFacts,
        target: Option<&Path>,
    ) -> Result<ContainerSpec, SpecError> {
        let rootfs = self.rootfs();
        let (volumes, seccomp) = (self.dir.path().join("volumes"), self.seccomp_dir());
        let inputs = ContainerInputs {
            id: "ctr1",
            sandbox_id: "pod1",
            image_name: "busybox:test",
            rootfs: &rootfs,
            pod_namespaces: &self.ns,
            target_pid_namespace: target,
            sandbox_files: &self.files,
            volumes_dir: &volumes,
            seccomp_profile_dir: &seccomp,
        };
        container_spec(config, sandbox, image, &inputs, host)
    }
    fn container(&self, config: &v1::ContainerConfig) -> Result<ContainerSpec, SpecError> {
        self.container_with(config, &pod_config(), &image(json!({"Cmd": ["sh"]})), &host(), None)
    }
    /// The container's spec as JSON, for terse checks.
    fn cjson(&self, config: &v1::ContainerConfig) -> Value {
        serde_json::to_value(self.container(config).unwrap().spec).unwrap()
    }
}

fn host() -> HostFacts {
    HostFacts {
        hostname: "node1".into(),
        kernel: (6, 1),
        seccomp: true,
        apparmor: false,
        apparmor_default_profile: None,
        selinux: false,
        swap_controller: true,
        hugetlb_controller: true,
        cgroup_v2: false,
        all_caps: defaults::caps_from_mask(u64::MAX),
        oom_score_adj_floor: None,
    }
}

fn image(cfg: Value) -> ImageConfiguration {
    serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": cfg,
    }))
    .unwrap()
}

fn pod_config() -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/x".into(),
        linux: Some(v1::LinuxPodSandboxConfig { cgroup_parent: "/kubepods/podx".into(), ..Default::default() }),
        ..Default::default()
    }
}

fn with_sc(sc: v1::LinuxContainerSecurityContext) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: "app".into(), attempt: 0 }),
        linux: Some(v1::LinuxContainerConfig { security_context: Some(sc), resources: None }),
        ..Default::default()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn field_of(e: &SpecError) -> String {
    match e {
        SpecError::Invalid { field, .. } | SpecError::Unsupported { field, .. } => field.clone(),
        other => panic!("not a field error: {other}"),
    }
}

fn mount<'a>(spec: &'a Value, dest: &str) -> Option<&'a Value> {
    spec["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == dest)
}

fn namespace(spec: &Value, typ: &str) -> Option<Value> {
    spec["linux"]["namespaces"].as_array().unwrap().iter().find(|n| n["type"] == typ).cloned()
}

// ---- the pause container ----

#[test]
fn pod_defaults_follow_containerd() {
    let f = Fixture::new();
    let img = image(json!({"Entrypoint": ["/pause"], "Env": ["PATH=/bin"], "WorkingDir": "/w"}));
    let spec = f.pod(&pod_config(), &img).unwrap();
    let s = serde_json::to_value(&spec).unwrap();
    assert_eq!(s["process"]["args"], json!(["/pause"]));
    assert_eq!(s["process"]["env"], json!(["PATH=/bin"]));
    assert_eq!(s["process"]["cwd"], json!("/w"));
    assert_eq!(s["process"]["noNewPrivileges"], json!(true));
    assert_eq!(s["process"]["oomScoreAdj"], json!(-998));
    assert_eq!(s["root"]["readonly"], json!(true));
    assert_eq!(s["hostname"], json!("web-0"));
    assert_eq!(s["linux"]["cgroupsPath"], json!("/kubepods/podx/pod1"));
    assert_eq!(s["linux"]["resources"]["cpu"]["shares"], json!(2));
    assert_eq!(namespace(&s, "network").unwrap()["path"], json!("/proc/self/ns/net"));
    for t in ["pid", "ipc", "uts", "mount"] {
        assert!(namespace(&s, t).unwrap().get("path").is_none(), "{t}");
    }
    let shm = mount(&s, "/dev/shm").unwrap();
    assert_eq!(shm["type"], json!("bind"));
    assert_eq!(shm["source"], json!(f.files.shm));
    assert_eq!(strings(&shm["options"]), ["rbind", "ro"]);
    assert_eq!(mount(&s, "/etc/resolv.conf").unwrap()["source"], json!(f.files.resolv_conf));
    assert!(mount(&s, "/run").is_none() && mount(&s, "/sys/fs/cgroup").is_none());
    assert_eq!(strings(&s["linux"]["maskedPaths"]).len(), 11);
    assert!(s["process"]["rlimits"].is_null() && s["linux"]["seccomp"].is_null());
    let a = &s["annotations"];
    assert_eq!(a["io.kubernetes.cri.container-type"], json!("sandbox"));
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], json!("pod1"));
    assert_eq!(a["io.kubernetes.cri.sandbox-name"], json!("web"));
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], json!("default"));
    assert_eq!(a["io.kubernetes.cri.sandbox-uid"], json!("uid-1"));
    assert_eq!(a["io.kubernetes.cri.sandbox-log-directory"], json!("/var/log/pods/x"));
    assert!(a.get("io.kubernetes.cri.sandbox-memory").is_none());
}

fn pod_with(ns: v1::NamespaceOption, sysctls: &[(&str, &str)]) -> v1::PodSandboxConfig {
    let mut p = pod_config();
    let linux = p.linux.as_mut().unwrap();
    linux.security_context = Some(v1::LinuxSandboxSecurityContext { namespace_options: Some(ns), ..Default::default() });
    linux.sysctls = sysctls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    p
}

#[test]
fn pod_host_namespaces() {
    let f = Fixture::new();
    let img = image(json!({"Cmd": ["/pause"]}));
    let node = v1::NamespaceMode::Node as i32;
    let mut p = pod_with(v1::NamespaceOption { network: node, pid: node, ipc: node, ..Default::default() }, &[]);
    let e = f.pod(&p, &img).unwrap_err();
    assert_eq!(field_of(&e), "sandbox.config.hostname");
    p.hostname.clear();
    let s = serde_json::to_value(f.pod(&p, &img).unwrap()).unwrap();
    for t in ["network", "uts", "pid", "ipc"] {
        assert!(namespace(&s, t).is_none(), "{t}");
    }
    assert_eq!(mount(&s, "/dev/shm").unwrap()["source"], json!("/dev/shm"));
    let target = pod_with(v1::NamespaceOption { ipc: v1::NamespaceMode::Target as i32, ..Default::default() }, &[]);
    assert_eq!(field_of(&f.pod(&target, &img).unwrap_err()), "sandbox.config.linux.security_context.namespace_options.ipc");
}

#[test]
fn pod_sysctls_refused_when_unsafe() {
    let f = Fixture::new();
    let img = image(json!({"Cmd": ["/pause"]}));
    let ok = pod_with(v1::NamespaceOption::default(), &[("net.ipv4.ip_forward", "1"), ("kernel.shmmax", "1000")]);
    let s = serde_json::to_value(f.pod(&ok, &img).unwrap()).unwrap();
    assert_eq!(s["linux"]["sysctl"]["net.ipv4.ip_forward"], json!("1"));
    let node = v1::NamespaceMode::Node as i32;
    let mut hostnet = pod_with(v1::NamespaceOption { network: node, ..Default::default() }, &[("net.ipv4.ip_forward", "1")]);
    hostnet.hostname.clear();
    let e = f.pod(&hostnet, &img).unwrap_err();
    assert_eq!(field_of(&e), "sandbox.config.linux.sysctls[\"net.ipv4.ip_forward\"]");
    assert!(e.to_string().contains("network namespace (namespace_options.network is NODE)"), "{e}");
    let hostipc = pod_with(v1::NamespaceOption { ipc: node, ..Default::default() }, &[("kernel.shmmax", "1")]);
    assert_eq!(field_of(&f.pod(&hostipc, &img).unwrap_err()), "sandbox.config.linux.sysctls[\"kernel.shmmax\"]");
    let hostwide = pod_with(v1::NamespaceOption::default(), &[("kernel.panic", "1")]);
    assert!(f.pod(&hostwide, &img).unwrap_err().to_string().contains("not a namespaced sysctl"));
}

#[test]
fn pod_cgroup_parent_rules() {
    assert_eq!(defaults::cgroups_path("", "x", "f").unwrap(), "/k8s.io/x");
    assert_eq!(defaults::cgroups_path("/kubepods/burstable/pod1/", "x", "f").unwrap(), "/kubepods/burstable/pod1/x");
    assert!(matches!(
        defaults::cgroups_path("/kubepods.slice/kubepods-pod1.slice", "x", "f"),
        Err(SpecError::Unsupported { .. })
    ));
    assert!(matches!(defaults::cgroups_path("kubepods", "x", "f"), Err(SpecError::Invalid { .. })));
    assert!(matches!(defaults::cgroups_path("/a/../b", "x", "f"), Err(SpecError::Invalid { .. })));
}

#[test]
fn pod_user_resources_and_image_errors() {
    let f = Fixture::new();
    let img = image(json!({"Cmd": ["/pause"], "User": "www"}));
    let mut p = pod_config();
    let s = serde_json::to_value(f.pod(&p, &img).unwrap()).unwrap();
    assert_eq!(s["process"]["user"], json!({"uid": 33, "gid": 34, "additionalGids": [34]}));
    let linux = p.linux.as_mut().unwrap();
    linux.resources = Some(v1::LinuxContainerResources { cpu_shares: 512, memory_limit_in_bytes: 1 << 20, ..Default::default() });
    linux.security_context = Some(v1::LinuxSandboxSecurityContext {
        run_as_user: Some(v1::Int64Value { value: 1000 }),
        supplemental_groups: vec![7, 5],
        ..Default::default()
    });
    let s = serde_json::to_value(f.pod(&p, &img).unwrap()).unwrap();
    assert_eq!(s["process"]["user"], json!({"uid": 1000, "gid": 1000, "additionalGids": [1000]}));
    assert_eq!(s["annotations"]["io.kubernetes.cri.sandbox-cpu-shares"], json!("512"));
    assert_eq!(s["annotations"]["io.kubernetes.cri.sandbox-memory"], json!("1048576"));
    assert_eq!(s["linux"]["resources"]["cpu"]["shares"], json!(2), "pod resources are annotations only");
    p.linux.as_mut().unwrap().security_context =
        Some(v1::LinuxSandboxSecurityContext { run_as_group: Some(v1::Int64Value { value: 5 }), ..Default::default() });
    assert_eq!(field_of(&f.pod(&p, &img).unwrap_err()), "sandbox.config.linux.security_context.run_as_group");
    assert!(matches!(f.pod(&pod_config(), &image(json!({}))), Err(SpecError::Image { .. })));
}

// ---- containers ----

#[test]
fn command_and_args_follow_kubelet() {
    let img = |ep: Option<&[&str]>, cmd: Option<&[&str]>| {
        let mut c = serde_json::Map::new();
        if let Some(ep) = ep {
            c.insert("Entrypoint".into(), json!(ep));
        }
        if let Some(cmd) = cmd {
            c.insert("Cmd".into(), json!(cmd));
        }
        image(Value::Object(c)).config().clone().unwrap_or_default()
    };
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let full = img(Some(&["/ep"]), Some(&["a", "b"]));
    // Neither: the image's Entrypoint and Cmd.
    assert_eq!(container::process_args(&[], &[], &full).unwrap(), ["/ep", "a", "b"]);
    // Args only: the image's Entrypoint with the args.
    assert_eq!(container::process_args(&[], &v(&["x"]), &full).unwrap(), ["/ep", "x"]);
    // Command only: the command, nothing of the image.
    assert_eq!(container::process_args(&v(&["/c"]), &[], &full).unwrap(), ["/c"]);
    // Both: command then args.
    assert_eq!(container::process_args(&v(&["/c"]), &v(&["y"]), &full).unwrap(), ["/c", "y"]);
    // An Entrypoint of [""] is no entrypoint.
    assert_eq!(container::process_args(&[], &[], &img(Some(&[""]), Some(&["sh"]))).unwrap(), ["sh"]);
    let e = container::process_args(&[], &[], &img(None, None)).unwrap_err();
    assert_eq!(field_of(&e), "container.config.command");
}

#[test]
fn container_defaults_env_and_annotations() {
    let f = Fixture::new();
    let mut c = with_sc(v1::LinuxContainerSecurityContext::default());
    c.envs = vec![v1::KeyValue { key: "B".into(), value: b"3".to_vec() }, v1::KeyValue { key: "C".into(), value: b"4".to_vec() }];
    c.tty = true;
    let img = image(json!({"Cmd": ["sh"], "Env": ["A=1", "B=2"], "WorkingDir": "/srv"}));
    let s = serde_json::to_value(f.container_with(&c, &pod_config(), &img, &host(), None).unwrap().spec).unwrap();
    assert_eq!(strings(&s["process"]["env"]), [defaults::DEFAULT_PATH_ENV, "TERM=xterm", "HOSTNAME=web-0", "A=1", "B=3", "C=4"]);
    assert_eq!(s["process"]["terminal"], json!(true));
    assert_eq!(s["process"]["cwd"], json!("/srv"));
    assert_ne!(s["process"]["noNewPrivileges"], json!(true));
    assert_ne!(s["root"]["readonly"], json!(true));
    assert_eq!(s["linux"]["cgroupsPath"], json!("/kubepods/podx/ctr1"));
    let mut caps = strings(&s["process"]["capabilities"]["bounding"]);
    caps.sort();
    let mut want = defaults::DEFAULT_CAPS.to_vec();
    want.sort();
    assert_eq!(caps, want);
    assert!(s["process"]["capabilities"]["ambient"].is_null());
    assert_eq!(s["linux"]["maskedPaths"], json!([]), "an empty list from kubelet means none");
    assert_eq!(strings(&mount(&s, "/sys/fs/cgroup").unwrap()["options"]).last().unwrap(), "ro");
    for (t, p) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts"), ("pid", "pid")] {
        assert_eq!(namespace(&s, t).unwrap()["path"], json!(format!("/proc/self/ns/{p}")));
    }
    assert!(namespace(&s, "mount").unwrap().get("path").is_none());
    assert!(namespace(&s, "cgroup").is_none(), "no cgroupns on a v1 host");
    let a = &s["annotations"];
    assert_eq!(a["io.kubernetes.cri.container-type"], json!("container"));
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], json!("pod1"));
    assert_eq!(a["io.kubernetes.cri.container-name"], json!("app"));
    assert_eq!(a["io.kubernetes.cri.image-name"], json!("busybox:test"));
    // The node's hostname without the pod's; a cgroup namespace on v2.
    let mut p = pod_config();
    p.hostname.clear();
    let v2 = HostFacts { cgroup_v2: true, ..host() };
    let s = serde_json::to_value(f.container_with(&c, &p, &img, &v2, None).unwrap().spec).unwrap();
    assert!(strings(&s["process"]["env"]).contains(&"HOSTNAME=node1".to_owned()));
    assert!(namespace(&s, "cgroup").is_some());
    let cdi = v1::ContainerConfig { cdi_devices: vec![v1::CdiDevice { name: "vendor.com/gpu=0".into() }], ..c.clone() };
    assert_eq!(field_of(&f.container(&cdi).unwrap_err()), "container.config.CDI_devices");
    let mut bad = c.clone();
    bad.working_dir = "rel".into();
    assert_eq!(field_of(&f.container(&bad).unwrap_err()), "container.config.working_dir");
}

#[test]
fn user_resolved_in_the_rootfs() {
    let f = Fixture::new();
    let user = |sc: v1::LinuxContainerSecurityContext, img_user: &str| {
        let img = image(json!({"Cmd": ["sh"], "User": img_user}));
        f.container_with(&with_sc(sc), &pod_config(), &img, &host(), None)
            .map(|c| serde_json::to_value(c.spec.process().as_ref().unwrap().user()).unwrap())
    };
    let sc = v1::LinuxContainerSecurityContext::default;
    assert_eq!(user(sc(), "").unwrap(), json!({"uid": 0, "gid": 0, "additionalGids": [0]}));
    assert_eq!(user(sc(), "bob").unwrap(), json!({"uid": 1000, "gid": 1000, "additionalGids": [29, 50, 1000]}));
    assert_eq!(user(sc(), "bob:staff").unwrap(), json!({"uid": 1000, "gid": 50, "additionalGids": [29, 50]}));
    assert_eq!(user(sc(), "4242").unwrap(), json!({"uid": 4242, "gid": 0, "additionalGids": [0]}));
    let by_uid = v1::LinuxContainerSecurityContext { run_as_user: Some(v1::Int64Value { value: 33 }), ..sc() };
    assert_eq!(user(by_uid, "bob").unwrap(), json!({"uid": 33, "gid": 34, "additionalGids": [34]}));
    let named = v1::LinuxContainerSecurityContext {
        run_as_username: "bob".into(),
        run_as_user: Some(v1::Int64Value { value: 33 }),
        run_as_group: Some(v1::Int64Value { value: 7 }),
        supplemental_groups: vec![100, 29],
        ..sc()
    };
    assert_eq!(user(named.clone(), "").unwrap(), json!({"uid": 1000, "gid": 7, "additionalGids": [7, 29, 50, 100]}));
    let strict =
        v1::LinuxContainerSecurityContext { supplemental_groups_policy: v1::SupplementalGroupsPolicy::Strict as i32, ..named };
    assert_eq!(user(strict, "").unwrap(), json!({"uid": 1000, "gid": 7, "additionalGids": [7, 29, 100]}));
    let e = user(v1::LinuxContainerSecurityContext { run_as_username: "nobody".into(), ..sc() }, "").unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.run_as_username");
    let e = user(v1::LinuxContainerSecurityContext { run_as_user: Some(v1::Int64Value { value: -1 }), ..sc() }, "").unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.run_as_user");
    assert_eq!(field_of(&user(sc(), "bob:wheel").unwrap_err()), "the image's User");
    let e = user(v1::LinuxContainerSecurityContext { supplemental_groups: vec![-3], ..sc() }, "").unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.supplemental_groups[0]");
}

#[test]
fn passwd_symlink_cannot_escape_the_rootfs() {
    let f = Fixture::new();
    // A host file with a user the image does not have, and an image whose passwd points at it.
    let host_dir = f.dir.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("passwd"), "evil:x:4000:4000::/:/bin/sh\n").unwrap();
    let passwd = f.rootfs().join("etc/passwd");
    std::fs::remove_file(&passwd).unwrap();
    std::os::unix::fs::symlink(host_dir.join("passwd"), &passwd).unwrap();
    let relative = format!("../../../..{}", host_dir.join("passwd").display());
    let files = user::Files::read(&f.rootfs()).unwrap();
    assert!(files.passwd.is_none(), "an absolute link resolves inside the rootfs");
    std::fs::remove_file(&passwd).unwrap();
    std::os::unix::fs::symlink(&relative, &passwd).unwrap();
    let files = user::Files::read(&f.rootfs()).unwrap();
    assert!(files.passwd.is_none(), "a relative link cannot climb out");
    let sc = v1::LinuxContainerSecurityContext { run_as_username: "evil".into(), ..Default::default() };
    assert!(f.container(&with_sc(sc)).unwrap_err().to_string().contains("no user \"evil\""));
}

#[test]
fn privileged_gets_everything() {
    let f = Fixture::new();
    let sc = v1::LinuxContainerSecurityContext {
        privileged: true,
        seccomp: Some(v1::SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, localhost_ref: String::new() }),
        capabilities: Some(v1::Capability { drop_capabilities: vec!["CHOWN".into()], ..Default::default() }),
        ..Default::default()
    };
    let c = with_sc(sc);
    let e = f.container(&c).unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.privileged");
    let mut p = pod_config();
    p.linux.as_mut().unwrap().security_context = Some(v1::LinuxSandboxSecurityContext { privileged: true, ..Default::default() });
    let spec = f.container_with(&c, &p, &image(json!({"Cmd": ["sh"]})), &host(), None).unwrap().spec;
    let s = serde_json::to_value(&spec).unwrap();
    assert_eq!(strings(&s["process"]["capabilities"]["bounding"]).len(), 41);
    assert!(s["linux"]["maskedPaths"].is_null() && s["linux"]["readonlyPaths"].is_null());
    assert!(s["linux"]["seccomp"].is_null());
    assert!(strings(&mount(&s, "/sys").unwrap()["options"]).contains(&"rw".to_owned()));
    assert!(strings(&mount(&s, "/sys/fs/cgroup").unwrap()["options"]).contains(&"rw".to_owned()));
    assert!(s["linux"]["devices"].as_array().unwrap().iter().any(|d| d["path"] == "/dev/null"));
    assert_eq!(s["linux"]["resources"]["devices"], json!([{"allow": true, "access": "rwm"}]));
}

#[test]
fn capabilities_add_drop_all() {
    let all = defaults::caps_from_mask(u64::MAX);
    let caps = |add: &[&str], drop: &[&str]| {
        let c = v1::Capability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            add_ambient_capabilities: vec![],
        };
        container::capabilities(Some(&c), &all, "f")
    };
    let v = caps(&["ALL"], &["CHOWN"]).unwrap();
    assert_eq!(v.len(), 40);
    assert!(!v.contains(&"CAP_CHOWN".to_owned()));
    assert_eq!(caps(&["net_admin"], &["ALL"]).unwrap(), ["CAP_NET_ADMIN"]);
    let v = caps(&["SYS_ADMIN"], &["KILL", "CAP_MKNOD"]).unwrap();
    assert!(
        v.contains(&"CAP_SYS_ADMIN".to_owned()) && !v.contains(&"CAP_KILL".to_owned()) && !v.contains(&"CAP_MKNOD".to_owned())
    );
    assert_eq!(field_of(&caps(&["BOGUS"], &[]).unwrap_err()), "f.add_capabilities[0]");
    let amb = v1::Capability { add_ambient_capabilities: vec!["NET_RAW".into()], ..Default::default() };
    assert!(matches!(container::capabilities(Some(&amb), &all, "f"), Err(SpecError::Unsupported { .. })));
    // The seccomp default follows the final bounding set.
    let f = Fixture::new();
    let sc = v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability { add_capabilities: vec!["SYS_ADMIN".into()], ..Default::default() }),
        seccomp: Some(v1::SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, localhost_ref: String::new() }),
        ..Default::default()
    };
    let s = f.cjson(&with_sc(sc));
    let rules = s["linux"]["seccomp"]["syscalls"].as_array().unwrap();
    assert!(rules.iter().any(|r| strings(&r["names"]).contains(&"mount".to_owned())));
    assert!(!rules.iter().any(|r| strings(&r["names"]) == ["clone3"]));
}

fn seccomp_sc(typ: ProfileType, r: &str) -> v1::LinuxContainerSecurityContext {
    v1::LinuxContainerSecurityContext {
        seccomp: Some(v1::SecurityProfile { profile_type: typ as i32, localhost_ref: r.into() }),
        ..Default::default()
    }
}

#[test]
fn seccomp_profiles() {
    let f = Fixture::new();
    let s = f.cjson(&with_sc(seccomp_sc(ProfileType::RuntimeDefault, "")));
    let sc = &s["linux"]["seccomp"];
    assert_eq!(sc["defaultAction"], json!("SCMP_ACT_ERRNO"));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(strings(&sc["architectures"]), ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    }
    let rules = sc["syscalls"].as_array().unwrap();
    let allowed = strings(&rules[0]["names"]);
    assert!(allowed.len() > 300 && allowed.contains(&"read".to_owned()) && !allowed.contains(&"mount".to_owned()));
    assert_eq!(rules.iter().filter(|r| strings(&r["names"]) == ["personality"]).count(), 5);
    assert!(rules.iter().any(|r| strings(&r["names"]) == ["ptrace"]), "kernel 6.1 allows ptrace");
    let clone3 = rules.iter().find(|r| strings(&r["names"]) == ["clone3"]).unwrap();
    assert_eq!(clone3["errnoRet"], json!(38));
    let clone = rules.iter().find(|r| strings(&r["names"]) == ["clone"]).unwrap();
    assert_eq!(clone["args"][0]["op"], json!("SCMP_CMP_MASKED_EQ"));
    assert_eq!(clone["args"][0]["value"], json!(0x7E02_0000u64));
    let old = security::default_profile(&[], (4, 7));
    assert!(!old["syscalls"].as_array().unwrap().iter().any(|r| strings(&r["names"]) == ["ptrace"]));

    // Unconfined and nothing asked: no filter.
    assert!(f.cjson(&with_sc(seccomp_sc(ProfileType::Unconfined, "")))["linux"]["seccomp"].is_null());
    assert!(f.cjson(&with_sc(Default::default()))["linux"]["seccomp"].is_null());

    // Localhost: a profile file inside the allowed directory.
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]});
    std::fs::write(f.seccomp_dir().join("p.json"), profile.to_string()).unwrap();
    let path = f.seccomp_dir().join("p.json");
    let s = f.cjson(&with_sc(seccomp_sc(ProfileType::Localhost, path.to_str().unwrap())));
    assert_eq!(s["linux"]["seccomp"]["defaultAction"], json!("SCMP_ACT_ALLOW"));
    let s = f.cjson(&with_sc(seccomp_sc(ProfileType::Localhost, "localhost/p.json")));
    assert_eq!(s["linux"]["seccomp"]["syscalls"][0]["names"], json!(["chmod"]));

    // Outside the directory, directly or through a symlink: refused naming the field.
    let outside = f.dir.path().join("outside.json");
    std::fs::write(&outside, profile.to_string()).unwrap();
    std::os::unix::fs::symlink(&outside, f.seccomp_dir().join("link.json")).unwrap();
    let field = "container.config.linux.security_context.seccomp.localhost_ref";
    for r in [outside.to_str().unwrap(), "link.json", "../outside.json"] {
        let e = f.container(&with_sc(seccomp_sc(ProfileType::Localhost, r))).unwrap_err();
        assert_eq!(field_of(&e), field, "{r}");
        assert!(e.to_string().contains("outside the seccomp profile directory"), "{e}");
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
    }
    let e = f.container(&with_sc(seccomp_sc(ProfileType::Localhost, "missing.json"))).unwrap_err();
    assert_eq!(field_of(&e), field);
    std::fs::write(f.seccomp_dir().join("bad.json"), "{").unwrap();
    assert_eq!(field_of(&f.container(&with_sc(seccomp_sc(ProfileType::Localhost, "bad.json"))).unwrap_err()), field);
    let e = f.container(&with_sc(seccomp_sc(ProfileType::RuntimeDefault, "x"))).unwrap_err();
    assert_eq!(field_of(&e), field);
    assert_eq!(field_of(&f.container(&with_sc(seccomp_sc(ProfileType::Localhost, ""))).unwrap_err()), field);

    // The legacy strings.
    #[allow(deprecated)]
    let legacy = |p: &str| v1::LinuxContainerSecurityContext { seccomp_profile_path: p.into(), ..Default::default() };
    assert!(f.cjson(&with_sc(legacy("runtime/default")))["linux"]["seccomp"].is_object());
    assert!(f.cjson(&with_sc(legacy("docker/default")))["linux"]["seccomp"].is_object());
    assert!(f.cjson(&with_sc(legacy("unconfined")))["linux"]["seccomp"].is_null());
    assert!(f.cjson(&with_sc(legacy("localhost/p.json")))["linux"]["seccomp"].is_object());
    let e = f.container(&with_sc(legacy("bogus"))).unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.seccomp_profile_path");

    // A kernel without seccomp: only Unconfined.
    let noseccomp = HostFacts { seccomp: false, ..host() };
    let img = image(json!({"Cmd": ["sh"]}));
    let e = f
        .container_with(&with_sc(seccomp_sc(ProfileType::RuntimeDefault, "")), &pod_config(), &img, &noseccomp, None)
        .unwrap_err();
    assert!(matches!(e, SpecError::Unsupported { .. }));
}

#[test]
fn apparmor_and_selinux_without_the_modules() {
    let f = Fixture::new();
    let aa = |typ: ProfileType, r: &str| v1::LinuxContainerSecurityContext {
        apparmor: Some(v1::SecurityProfile { profile_type: typ as i32, localhost_ref: r.into() }),
        ..Default::default()
    };
    assert!(f.cjson(&with_sc(aa(ProfileType::Unconfined, "")))["process"]["apparmorProfile"].is_null());
    let e = f.container(&with_sc(aa(ProfileType::RuntimeDefault, ""))).unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.apparmor");
    assert_eq!(tonic::Status::from(e).code(), tonic::Code::FailedPrecondition);
    let e = f.container(&with_sc(aa(ProfileType::Localhost, "p"))).unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.apparmor.localhost_ref");
    #[allow(deprecated)]
    let legacy = v1::LinuxContainerSecurityContext { apparmor_profile: "runtime/default".into(), ..Default::default() };
    assert_eq!(field_of(&f.container(&with_sc(legacy)).unwrap_err()), "container.config.linux.security_context.apparmor");
    // SELinux options are checked and have no effect without SELinux.
    let se = |level: &str| v1::LinuxContainerSecurityContext {
        selinux_options: Some(v1::SeLinuxOption { user: "u".into(), role: "r".into(), r#type: "t".into(), level: level.into() }),
        ..Default::default()
    };
    let s = f.cjson(&with_sc(se("s0:c1,c2")));
    assert!(s["process"]["selinuxLabel"].is_null() && s["linux"]["mountLabel"].is_null());
    f.cjson(&with_sc(se("s0-s0:c0.c1023")));
    let e = f.container(&with_sc(se("bad"))).unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.selinux_options.level");
}

fn cri_mount(dest: &str, src: &Path, prop: v1::MountPropagation, ro: bool) -> v1::Mount {
    v1::Mount {
        container_path: dest.into(),
        host_path: src.to_str().unwrap().into(),
        readonly: ro,
        propagation: prop as i32,
        ..Default::default()
    }
}

#[test]
fn mounts_options_order_and_overrides() {
    let f = Fixture::new();
    let data = f.dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let mut c = with_sc(v1::LinuxContainerSecurityContext { readonly_rootfs: true, ..Default::default() });
    c.mounts = vec![
        cri_mount("/a/b/c", &data.join("sub"), v1::MountPropagation::PropagationPrivate, false),
        cri_mount("/a", &data, v1::MountPropagation::PropagationPrivate, true),
        cri_mount("/etc/hosts", &f.files.hosts, v1::MountPropagation::PropagationPrivate, false),
        cri_mount("/new", &f.dir.path().join("missing"), v1::MountPropagation::PropagationPrivate, false),
    ];
    let out = f.container(&c).unwrap();
    let s = serde_json::to_value(&out.spec).unwrap();
    assert_eq!(out.host_dirs, [f.dir.path().join("missing")]);
    let dests: Vec<String> =
        s["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap().to_owned()).collect();
    let pos = |d: &str| dests.iter().position(|x| x == d).unwrap();
    assert!(pos("/a") < pos("/a/b/c"), "shallower mounts first: {dests:?}");
    assert_eq!(dests.iter().filter(|d| *d == "/etc/hosts").count(), 1);
    assert_eq!(strings(&mount(&s, "/a").unwrap()["options"]), ["rbind", "rprivate", "ro"]);
    assert_eq!(strings(&mount(&s, "/a/b/c").unwrap()["options"]), ["rbind", "rprivate", "rw"]);
    assert_eq!(strings(&mount(&s, "/etc/hosts").unwrap()["options"]), ["rbind", "rprivate", "rw"], "the request's mount wins");
    assert_eq!(
        strings(&mount(&s, "/etc/resolv.conf").unwrap()["options"]),
        ["rbind", "rprivate", "ro"],
        "readonly rootfs: pod files ro"
    );
    assert_eq!(strings(&mount(&s, "/dev/shm").unwrap()["options"]), ["rbind", "rprivate", "rw"]);
    assert_eq!(mount(&s, "/etc/hostname").unwrap()["source"], json!(f.files.hostname.as_ref().unwrap()));
    assert_eq!(s["root"]["readonly"], json!(true));
    assert!(s["linux"]["rootfsPropagation"].is_null());

    // A /dev of the request's own drops every default mount under /dev.
    let mut c = with_sc(Default::default());
    c.mounts = vec![cri_mount("/dev", Path::new("/dev"), v1::MountPropagation::PropagationPrivate, false)];
    let s = f.cjson(&c);
    assert!(mount(&s, "/dev/pts").is_none() && mount(&s, "/dev/mqueue").is_none());
    assert_eq!(mount(&s, "/dev").unwrap()["type"], json!("bind"));

    // rslave on this host's private root is refused, naming the mount.
    let mut c = with_sc(Default::default());
    c.mounts = vec![cri_mount("/x", &data, v1::MountPropagation::PropagationHostToContainer, false)];
    match f.container(&c) {
        Ok(out) => {
            let s = serde_json::to_value(out.spec).unwrap();
            assert_eq!(strings(&mount(&s, "/x").unwrap()["options"]), ["rbind", "rslave", "rw"]);
        }
        Err(e) => assert_eq!(field_of(&e), "container.config.mounts[0].propagation"),
    }
    // Malformed and unsupported mounts.
    let bad = |m: v1::Mount| {
        let mut c = with_sc(Default::default());
        c.mounts = vec![m];
        field_of(&f.container(&c).unwrap_err())
    };
    let base = cri_mount("/x", &data, v1::MountPropagation::PropagationPrivate, false);
    assert_eq!(bad(v1::Mount { container_path: "x".into(), ..base.clone() }), "container.config.mounts[0].container_path");
    assert_eq!(bad(v1::Mount { host_path: "".into(), ..base.clone() }), "container.config.mounts[0].host_path");
    assert_eq!(bad(v1::Mount { propagation: 9, ..base.clone() }), "container.config.mounts[0].propagation");
    assert_eq!(bad(v1::Mount { recursive_read_only: true, ..base.clone() }), "container.config.mounts[0].recursive_read_only");
    let idmap = v1::IdMapping { host_id: 1000, container_id: 0, length: 1 };
    assert_eq!(bad(v1::Mount { uid_mappings: vec![idmap], ..base.clone() }), "container.config.mounts[0].uidMappings");
    let rro = f.cjson(&{
        let mut c = with_sc(Default::default());
        c.mounts = vec![v1::Mount { readonly: true, recursive_read_only: true, ..base.clone() }];
        c
    });
    assert_eq!(strings(&mount(&rro, "/x").unwrap()["options"]), ["rbind", "rprivate", "ro", "rro"]);
}

#[test]
fn propagation_needs_a_shared_or_slave_source() {
    let info = libcontainer::mountinfo::parse(
        "1 0 8:1 / / rw - ext4 /dev/sda rw\n\
         2 1 0:5 / /shared rw shared:3 - tmpfs t rw\n\
         3 1 0:6 / /slave rw master:3 - tmpfs t rw\n",
    );
    use mounts::check_propagation as check;
    assert!(check(Path::new("/shared/x"), &info, true).is_ok());
    assert!(check(Path::new("/slave/x"), &info, false).is_ok());
    assert!(check(Path::new("/slave/x"), &info, true).unwrap_err().contains("/slave"));
    assert!(check(Path::new("/other"), &info, false).unwrap_err().contains("not a shared or slave mount"));
    // The options and the rootfs propagation, on a host where the source is shared.
    let mut spec = defaults::base(Path::new("/r"));
    let bind = |dest: &str, p: v1::MountPropagation| mounts::Bind {
        container_path: dest.into(),
        host_path: "/shared".into(),
        readonly: false,
        propagation: p,
        recursive_readonly: false,
        selinux_relabel: false,
        field: "m".into(),
    };
    let text = "1 0 8:1 / / rw shared:1 - ext4 /dev/sda rw\n";
    let binds = vec![
        bind("/s", v1::MountPropagation::PropagationHostToContainer),
        bind("/b", v1::MountPropagation::PropagationBidirectional),
    ];
    mounts::apply(&mut spec, binds, vec![], &|| text.to_owned()).unwrap();
    assert_eq!(strings(&mount(&spec, "/s").unwrap()["options"]), ["rbind", "rslave", "rw"]);
    assert_eq!(strings(&mount(&spec, "/b").unwrap()["options"]), ["rbind", "rshared", "rw"]);
    assert_eq!(spec["linux"]["rootfsPropagation"], json!("rshared"));
}

#[test]
fn image_volumes_and_devices() {
    let f = Fixture::new();
    let img = image(json!({"Cmd": ["sh"], "Volumes": {"/data": {}, "/cache": {}, "rel": {}}}));
    let mut c = with_sc(Default::default());
    c.mounts = vec![cri_mount("/cache", &f.files.shm, v1::MountPropagation::PropagationPrivate, false)];
    c.devices =
        vec![v1::Device { container_path: "/dev/mynull".into(), host_path: "/dev/null".into(), permissions: "rw".into() }];
    let out = f.container_with(&c, &pod_config(), &img, &host(), None).unwrap();
    let vols = f.dir.path().join("volumes");
    assert_eq!(
        out.image_volumes,
        [
            ImageVolume { container_path: "/data".into(), host_path: vols.join("1") },
            ImageVolume { container_path: "/rel".into(), host_path: vols.join("2") },
        ]
    );
    assert!(out.host_dirs.is_empty(), "image volume dirs are listed once, as volumes");
    let s = serde_json::to_value(&out.spec).unwrap();
    assert_eq!(mount(&s, "/data").unwrap()["source"], json!(vols.join("1")));
    assert_eq!(mount(&s, "/cache").unwrap()["source"], json!(f.files.shm));
    let dev = &s["linux"]["devices"][0];
    assert_eq!(
        (dev["path"].clone(), dev["type"].clone(), dev["major"].clone(), dev["minor"].clone()),
        (json!("/dev/mynull"), json!("c"), json!(1), json!(3))
    );
    let rule = s["linux"]["resources"]["devices"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(rule, json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}));
    let bad = |d: v1::Device| {
        let mut c = with_sc(Default::default());
        c.devices = vec![d];
        field_of(&f.container(&c).unwrap_err())
    };
    let d = v1::Device { container_path: "/dev/x".into(), host_path: "/dev/null".into(), permissions: "rw".into() };
    assert_eq!(bad(v1::Device { permissions: "rwx".into(), ..d.clone() }), "container.config.devices[0].permissions");
    assert_eq!(
        bad(v1::Device { host_path: f.files.hosts.to_str().unwrap().into(), ..d.clone() }),
        "container.config.devices[0].host_path"
    );
    assert_eq!(bad(v1::Device { container_path: "x".into(), ..d }), "container.config.devices[0].container_path");
}

#[test]
fn resources_and_oom() {
    let f = Fixture::new();
    let mut c = with_sc(Default::default());
    let r = v1::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 256,
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: 900,
        cpuset_cpus: "0".into(),
        cpuset_mems: "0".into(),
        hugepage_limits: vec![v1::HugepageLimit { page_size: "2MB".into(), limit: 0 }],
        unified: [("memory.high".to_owned(), "max".to_owned())].into(),
        memory_swap_limit_in_bytes: 0,
    };
    c.linux.as_mut().unwrap().resources = Some(r.clone());
    let s = f.cjson(&c);
    let res = &s["linux"]["resources"];
    assert_eq!(res["cpu"], json!({"period": 100000, "quota": 50000, "shares": 256, "cpus": "0", "mems": "0"}));
    assert_eq!(res["memory"], json!({"limit": 67108864, "swap": 67108864}));
    assert_eq!(res["hugepageLimits"], json!([{"pageSize": "2MB", "limit": 0}]));
    assert_eq!(res["unified"], json!({"memory.high": "max"}));
    assert_eq!(s["process"]["oomScoreAdj"], json!(900));
    let floor = HostFacts { oom_score_adj_floor: Some(950), ..host() };
    let mut s4 = defaults::base(Path::new("/r"));
    container::resources(&mut s4, &r, &floor, "f").unwrap();
    assert_eq!(s4["process"]["oomScoreAdj"], json!(950));
    let mut s2 = defaults::base(Path::new("/r"));
    let no_swap = HostFacts { swap_controller: false, hugetlb_controller: false, ..host() };
    container::resources(
        &mut s2,
        &v1::LinuxContainerResources { memory_swap_limit_in_bytes: 1 << 30, ..r.clone() },
        &no_swap,
        "f",
    )
    .unwrap();
    assert_eq!(s2["linux"]["resources"]["memory"], json!({"limit": 67108864}));
    assert!(s2["linux"]["resources"]["hugepageLimits"].is_null());
    let mut s3 = defaults::base(Path::new("/r"));
    container::resources(
        &mut s3,
        &v1::LinuxContainerResources { memory_swap_limit_in_bytes: 1 << 30, ..r.clone() },
        &host(),
        "f",
    )
    .unwrap();
    assert_eq!(s3["linux"]["resources"]["memory"]["swap"], json!(1u64 << 30));
    for (bad, field) in [
        (v1::LinuxContainerResources { cpu_shares: -1, ..Default::default() }, "f.cpu_shares"),
        (v1::LinuxContainerResources { memory_limit_in_bytes: -5, ..Default::default() }, "f.memory_limit_in_bytes"),
        (v1::LinuxContainerResources { oom_score_adj: 1001, ..Default::default() }, "f.oom_score_adj"),
    ] {
        assert_eq!(field_of(&container::resources(&mut defaults::base(Path::new("/r")), &bad, &host(), "f").unwrap_err()), field);
    }
}

#[test]
fn masked_paths_pid_namespaces_and_nnp() {
    let f = Fixture::new();
    let sc = v1::LinuxContainerSecurityContext {
        masked_paths: vec!["/proc/kcore".into()],
        readonly_paths: vec!["/proc/sys".into()],
        no_new_privs: true,
        namespace_options: Some(v1::NamespaceOption { pid: v1::NamespaceMode::Container as i32, ..Default::default() }),
        ..Default::default()
    };
    let s = f.cjson(&with_sc(sc));
    assert_eq!(s["linux"]["maskedPaths"], json!(["/proc/kcore"]));
    assert_eq!(s["linux"]["readonlyPaths"], json!(["/proc/sys"]));
    assert_eq!(s["process"]["noNewPrivileges"], json!(true));
    assert!(namespace(&s, "pid").unwrap().get("path").is_none(), "its own PID namespace");
    let target = v1::LinuxContainerSecurityContext {
        namespace_options: Some(v1::NamespaceOption {
            pid: v1::NamespaceMode::Target as i32,
            target_id: "other".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = f.container(&with_sc(target.clone())).unwrap_err();
    assert_eq!(field_of(&e), "container.config.linux.security_context.namespace_options.target_id");
    let img = image(json!({"Cmd": ["sh"]}));
    let spec = f
        .container_with(&with_sc(target), &pod_config(), &img, &host(), Some(Path::new("/proc/thread-self/ns/pid")))
        .unwrap()
        .spec;
    let pid = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
        .unwrap()
        .clone();
    assert_eq!(pid.path().as_deref(), Some(Path::new("/proc/thread-self/ns/pid")));
    let userns = v1::LinuxContainerSecurityContext {
        namespace_options: Some(v1::NamespaceOption {
            userns_options: Some(v1::UserNamespace { mode: v1::NamespaceMode::Pod as i32, uids: vec![], gids: vec![] }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(f.container(&with_sc(userns)), Err(SpecError::Unsupported { .. })));
}

#[test]
fn seccomp_default_data_is_complete() {
    let p = security::default_profile(&defaults::DEFAULT_CAPS.map(String::from), (6, 1));
    let names: Vec<String> = p["syscalls"].as_array().unwrap().iter().flat_map(|r| strings(&r["names"])).collect();
    for n in ["accept4", "cachestat", "io_uring_setup", "write", "clone", "clone3", "chroot"] {
        assert!(names.contains(&n.to_owned()), "{n}");
    }
    for n in ["mount", "reboot", "kexec_load", "open_by_handle_at"] {
        assert!(!names.contains(&n.to_owned()), "{n}");
    }
}

#[test]
fn apparmor_and_selinux_on_hosts_with_the_modules() {
    let aa = HostFacts { apparmor: true, apparmor_default_profile: Some("roci-default".into()), ..host() };
    let rd = Some(security::Profile::RuntimeDefault);
    assert_eq!(security::apparmor(rd.clone(), false, &aa, "f").unwrap().as_deref(), Some("roci-default"));
    assert_eq!(
        security::apparmor(None, false, &aa, "f").unwrap().as_deref(),
        Some("roci-default"),
        "nothing asked is RuntimeDefault"
    );
    assert_eq!(security::apparmor(rd.clone(), true, &aa, "f").unwrap(), None, "privileged: no profile");
    assert_eq!(security::apparmor(Some(security::Profile::Unconfined), false, &aa, "f").unwrap(), None);
    let unset = HostFacts { apparmor_default_profile: None, ..aa };
    assert!(matches!(security::apparmor(rd, false, &unset, "f"), Err(SpecError::Unsupported { .. })));
    let se = HostFacts { selinux: true, ..host() };
    let opts = v1::SeLinuxOption { level: "s0".into(), ..Default::default() };
    assert!(matches!(security::selinux(Some(&opts), &se, "f"), Err(SpecError::Unsupported { .. })));
    assert!(security::selinux(Some(&v1::SeLinuxOption::default()), &se, "f").is_ok());
    assert!(security::selinux(Some(&opts), &host(), "f").is_ok());
}

#[test]
fn privileged_pod_skips_seccomp() {
    let f = Fixture::new();
    let mut p = pod_config();
    let rd = v1::SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, localhost_ref: String::new() };
    p.linux.as_mut().unwrap().security_context =
        Some(v1::LinuxSandboxSecurityContext { seccomp: Some(rd.clone()), ..Default::default() });
    let img = image(json!({"Cmd": ["/pause"]}));
    let s = serde_json::to_value(f.pod(&p, &img).unwrap()).unwrap();
    assert!(s["linux"]["seccomp"]["syscalls"].is_array());
    p.linux.as_mut().unwrap().security_context =
        Some(v1::LinuxSandboxSecurityContext { seccomp: Some(rd), privileged: true, ..Default::default() });
    let s = serde_json::to_value(f.pod(&p, &img).unwrap()).unwrap();
    assert!(s["linux"]["seccomp"].is_null());
}

#[test]
fn a_directory_of_devices() {
    let f = Fixture::new();
    let dir = f.dir.path().join("devs");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mknod = |p: &Path, major, minor| {
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(p, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::from_bits_truncate(0o640), dev)
    };
    if mknod(&dir.join("a"), 1, 3).is_err() {
        eprintln!("skipped: mknod is not permitted here");
        return;
    }
    mknod(&dir.join("sub/b"), 1, 5).unwrap();
    std::fs::write(dir.join("not-a-device"), "").unwrap();
    let mut c = with_sc(Default::default());
    c.devices =
        vec![v1::Device { container_path: "/dev/mine".into(), host_path: dir.to_str().unwrap().into(), permissions: "r".into() }];
    let s = f.cjson(&c);
    let devs = s["linux"]["devices"].as_array().unwrap();
    let paths: Vec<&str> = devs.iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/dev/mine/a", "/dev/mine/sub/b"]);
    assert_eq!(devs[0]["fileMode"], json!(0o640));
    let rules = s["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules.len(), 3, "the default deny and one rule per device: {rules:?}");
    assert_eq!(rules[2], json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}));
}
