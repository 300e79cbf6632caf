//! What a test that runs pods needs, for the pod suite (pods.rs) and the container suite:
//!
//! - [`pause_image`]: the pause image, built from the project's static `roci-pause` (`/pause` its
//!   entrypoint) as an OCI layout, once per binary (cached); [`PodServer`] pushes it as
//!   `registry.k8s.io/pause:3.10`, the image both daemons are configured with.
//! - [`TestCgroup`]: a cgroup of the test's own under the suite's parent (`/roci-it-<pid>/<name>`),
//!   in every hierarchy. The daemon runs in `<name>/daemon` (containerd 1.6 makes a pod's
//!   `cgroup_parent` relative to its own cgroup, and the monitors and shims the daemons start
//!   stay in it); pods get `<name>/pods` as `cgroup_parent`. Teardown (Drop, also on panic)
//!   kills every process in the tree and removes it, deepest first.
//! - [`bridge_conflist`]: a CNI bridge network (`cni0`, host-local addresses from [`POD_SUBNET`]
//!   kept in a data dir of the test's own, portmap), written into the daemon's conf dir; the
//!   bridge lives in the daemon's private network namespace.
//! - [`PodServer`]: a registry serving the pause image, the daemon under test with it as mirror,
//!   the CNI network and the cgroup, torn down in that order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use roci_cri_proto::runtime_v1::{
    self as v1, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};
use roci_integration::cgroups::{self, ParentUse};
use roci_integration::registry::{Push, Registry};

use crate::server::{Client, CriServer, Target};

/// The pause image's name in both daemons' configuration.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The pods' subnet on the test bridge.
pub const POD_SUBNET: &str = "10.88.0.0/16";

/// The static `roci-pause`: `ROCI_PAUSE`, else beside `ROCI` (make's musl release build), else
/// the workspace's musl release build.
pub fn pause_binary() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("ROCI_PAUSE")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("ROCI").map(|r| PathBuf::from(r).with_file_name("roci-pause")))
        .chain(std::iter::once({
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target_dir.join("x86_64-unknown-linux-musl/release/roci-pause")
        }))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "no static roci-pause in {candidates:?}: `make build`, or `cargo build --release --target \
             x86_64-unknown-linux-musl -p roci-pause`, or set ROCI_PAUSE"
        )
    })
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The pause image as an OCI layout (tag `latest`): `/pause` and nothing else, entrypoint
/// `["/pause"]`. Built once per pause binary (keyed by its size and modification time).
pub fn pause_image() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let binary = pause_binary();
        let meta = std::fs::metadata(&binary).expect("stat roci-pause");
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
        let cache = std::env::temp_dir().join("roci-it-cache");
        let done = cache.join(format!("pause-image-{}-{}", meta.len(), mtime.as_nanos()));
        if !done.join("oci").join("index.json").exists() {
            std::fs::create_dir_all(&cache).expect("create the image cache dir");
            let tmp = cache.join(format!(".pause-image-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            let rootfs = tmp.join("rootfs");
            std::fs::create_dir_all(&rootfs).expect("create the pause rootfs");
            std::fs::copy(&binary, rootfs.join("pause")).expect("copy roci-pause");
            let layout = tmp.join("oci");
            let image = format!("{}:latest", layout.display());
            run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
            run(Command::new("umoci").args(["new", "--image", &image]));
            // GNU tar's layer, added verbatim: umoci 0.4's `insert` writes small layers without
            // their final padding, which a strict unpacker refuses.
            let tar = tmp.join("layer.tar");
            run(Command::new("tar")
                .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."));
            run(Command::new("umoci").args(["raw", "add-layer", "--image", &image]).arg(&tar));
            run(Command::new("umoci").args([
                "config",
                "--image",
                &image,
                "--config.entrypoint",
                "/pause",
                "--config.workingdir",
                "/",
                "--architecture",
                "amd64",
                "--os",
                "linux",
            ]));
            run(Command::new("umoci").args(["gc", "--layout"]).arg(&layout));
            let _ = std::fs::remove_dir_all(&rootfs);
            let _ = std::fs::remove_file(&tar);
            if std::fs::rename(&tmp, &done).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        done.join("oci")
    })
}

/// A cgroup tree of the test's own (see the module docs).
pub struct TestCgroup {
    /// `/roci-it-<pid>/<name>`.
    pub rel: String,
    _parent: ParentUse,
}

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let parent = ParentUse::take();
        let rel = format!("{}/{name}", cgroups::suite_parent());
        for sub in ["daemon", "pods"] {
            ensure(&format!("{rel}/{sub}"));
        }
        TestCgroup { rel, _parent: parent }
    }

    /// The `cgroup_parent` pods get.
    pub fn pod_parent(&self) -> String {
        format!("{}/pods", self.rel)
    }

    /// Move process `pid` (a daemon) into `<rel>/daemon` in every hierarchy.
    pub fn adopt(&self, pid: i32) {
        for dir in cgroups::dirs(&format!("{}/daemon", self.rel)) {
            let procs = dir.join("cgroup.procs");
            if let Err(e) = std::fs::write(&procs, pid.to_string()) {
                panic!("move the daemon {pid} into {}: {e}", procs.display());
            }
        }
    }

    /// The cgroup directories below `<rel>/pods` that exist (in any hierarchy), and under the
    /// daemon's (where containerd puts relative parents).
    pub fn pod_cgroups(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for dir in cgroups::dirs(&self.rel) {
            collect_dirs(&dir, &mut found);
        }
        found.retain(|d| {
            let s = d.to_string_lossy();
            !(s.ends_with("/daemon") || s.ends_with("/pods") || s.ends_with(&self.rel))
        });
        found
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
            collect_dirs(&e.path(), out);
        }
    }
}

/// Create cgroup `rel` level by level in every hierarchy; a v1 cpuset level gets its parent's
/// cpus and mems (a new cpuset has none, and takes no process).
fn ensure(rel: &str) {
    for h in cgroups::hierarchies() {
        let mut dir = h.mount.clone();
        for part in rel.trim_start_matches('/').split('/') {
            let parent = dir.clone();
            dir = dir.join(part);
            // Tests run in parallel: another may create a shared level (the suite's parent) first.
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create cgroup {}: {e}", dir.display()),
            }
            if !h.v2 && h.controllers.iter().any(|c| c == "cpuset") {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                    std::fs::write(dir.join(file), value.trim())
                        .unwrap_or_else(|e| panic!("set {file} of {}: {e}", dir.display()));
                }
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Pause processes, monitors and shims outlive a daemon: kill the whole tree, then remove it.
        for _ in 0..3 {
            cgroups::kill_all(&self.rel);
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = cgroups::remove_tree(&self.rel);
        if !left.is_empty() && !std::thread::panicking() {
            panic!("cgroups left behind: {left:?}");
        }
    }
}

/// A bridge network with host-local addresses from [`POD_SUBNET`] (allocations kept in
/// `ipam_dir`) and port mappings.
pub fn bridge_conflist(ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "roci-pods",
        "plugins": [
            {
                "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
    .to_string()
}

/// A daemon ready to run pods (see the module docs). Fields drop in order: the daemon, then the
/// cgroup tree (what outlived the daemon), then the registry.
pub struct PodServer {
    pub server: CriServer,
    pub cgroup: TestCgroup,
    /// The registry the daemon pulls from (docker.io and registry.k8s.io mirrored): push the
    /// images a test needs.
    #[allow(dead_code, reason = "the pod tests need only the pause image; the container tests push theirs here")]
    pub registry: Registry,
    /// host-local's allocations: one file per address in use (under `<network name>/`).
    pub ipam_dir: PathBuf,
}

impl PodServer {
    /// The daemon [`crate::server::target`] selects, with the bridge network.
    pub fn start(name: &str) -> PodServer {
        PodServer::start_with(name, bridge_conflist)
    }

    /// The daemon with the CNI configuration `conflist(ipam_dir)`.
    pub fn start_with(name: &str, conflist: impl FnOnce(&Path) -> String) -> PodServer {
        PodServer::start_target(crate::server::target(), name, conflist)
    }

    /// [`PodServer::start_with`] for `target`, whatever `ROCI_CRI_TEST_TARGET` says (the CRI
    /// benchmark, tests/bench-cri, runs both daemons side by side).
    pub fn start_target(target: Target, name: &str, conflist: impl FnOnce(&Path) -> String) -> PodServer {
        let registry = Registry::start();
        let pause = PAUSE_IMAGE.strip_prefix("registry.k8s.io/").expect("a registry.k8s.io image");
        registry.push(&format!("oci:{}:latest", pause_image().display()), pause, &Push::default());
        let cgroup = TestCgroup::new(name);
        let server = CriServer::target_with_registry(target, &registry, serde_json::json!({}));
        cgroup.adopt(server.pid().expect("the daemon runs"));
        let ipam_dir = server.dir.join("ipam");
        std::fs::write(server.cni_conf_dir.join("10-roci-pods.conflist"), conflist(&ipam_dir)).expect("write the CNI conf");
        PodServer { server, cgroup, registry, ipam_dir }
    }

    pub async fn client(&self) -> Client {
        let mut client = self.server.client().await;
        // containerd notices a CNI conf written after its start through inotify, a moment later.
        wait_network_ready(&mut client).await;
        client
    }

    /// SIGKILL the daemon and start it again (into the test's cgroup).
    pub fn kill_and_restart(&mut self) {
        let status = self.server.stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
        assert!(status.is_some(), "the daemon survived SIGKILL");
        self.restart();
    }

    /// Start the stopped daemon again, into the test's cgroup.
    pub fn restart(&mut self) {
        self.server.restart();
        self.cgroup.adopt(self.server.pid().expect("the daemon runs"));
    }

    /// The daemon's network namespace (where the bridge is).
    pub fn daemon_netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.server.pid().expect("the daemon runs")))
    }

    /// A pod config as kubelet sends it: metadata, the test's cgroup parent, namespaces POD.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "roci-test".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup.pod_parent(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The addresses host-local has allocated (its files named after the address).
    pub fn allocated_ips(&self) -> Vec<String> {
        let mut ips = Vec::new();
        for net in std::fs::read_dir(&self.ipam_dir).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(net.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.parse::<std::net::IpAddr>().is_ok() {
                    ips.push(name);
                }
            }
        }
        ips
    }
}

/// Wait until Status reports NetworkReady (containerd's CRI plugin answers "server is not
/// initialized yet" for a moment after a restart).
pub async fn wait_network_ready(client: &mut Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = client.runtime.status(v1::StatusRequest { verbose: false }).await.map(|s| s.into_inner());
        let ready = status
            .as_ref()
            .is_ok_and(|s| s.status.iter().flat_map(|s| &s.conditions).any(|c| c.r#type == "NetworkReady" && c.status));
        if ready {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "NetworkReady did not come: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
