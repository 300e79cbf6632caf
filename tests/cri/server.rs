//! The CRI server a test talks to, started privately for that test: roci-cri, or Debian
//! containerd with its CRI plugin (the reference), chosen by `ROCI_CRI_TEST_TARGET=roci|containerd`
//! (default roci). roci-cri's binary is `ROCI_CRI` (default: the workspace's debug build), the roci
//! it runs containers with `ROCI` (default: the debug build beside it).
//!
//! Each [`CriServer`] owns a temp dir with everything the daemon writes: its socket, root and
//! state dirs, its CNI configuration directory (empty at the start), its configuration file and
//! its log. The daemon runs in a network namespace of its own (`unshare --net`, loopback up), so
//! whatever it does to the network (later: the CNI bridge, host ports) never reaches the host's;
//! its pid is the daemon's own (`sh` execs it).
//!
//! Image tests start the daemon with a private registry as the mirror of docker.io and
//! registry.k8s.io ([`CriServer::with_registry`]); a [`Relay`] listening inside the daemon's
//! network namespace makes the host's registry reachable from there.
//!
//! Teardown (`Drop`, also when a test panics): SIGTERM to the daemon's pid, SIGKILL after 10 s;
//! SIGKILL to any process left whose command line names the temp dir; unmount whatever is mounted
//! under it; remove it. Neither daemon starts a container in these tests, so no cgroup is created
//! (containerd's CRI only makes cgroups for pods).

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use roci_cri_proto::runtime_v1::image_service_client::ImageServiceClient;
use roci_cri_proto::runtime_v1::runtime_service_client::RuntimeServiceClient;
use roci_integration::registry::{Registry, Relay};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Which daemon the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Roci,
    Containerd,
}

/// `ROCI_CRI_TEST_TARGET`: `roci` (default) or `containerd`.
pub fn target() -> Target {
    match std::env::var("ROCI_CRI_TEST_TARGET").as_deref() {
        Err(_) | Ok("") | Ok("roci") => Target::Roci,
        Ok("containerd") => Target::Containerd,
        Ok(other) => panic!("ROCI_CRI_TEST_TARGET={other}: expected roci or containerd"),
    }
}

/// roci-cri's binary: `ROCI_CRI`, or the workspace's debug build.
pub fn roci_cri_binary() -> PathBuf {
    let path = std::env::var_os("ROCI_CRI").map(PathBuf::from).unwrap_or_else(|| {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target_dir.join("debug/roci-cri")
    });
    assert!(path.is_file(), "{} does not exist: `cargo build -p roci-cri` or set ROCI_CRI", path.display());
    path
}

/// The roci binary roci-cri creates containers with: `ROCI` (make sets it to the release build),
/// or the workspace's debug build.
pub fn roci_binary() -> PathBuf {
    let path = std::env::var_os("ROCI").map(PathBuf::from).unwrap_or_else(|| roci_cri_binary().with_file_name("roci"));
    assert!(path.is_file(), "{} does not exist: `cargo build -p roci` or set ROCI", path.display());
    path
}

pub struct CriServer {
    pub target: Target,
    /// The temp dir; everything below it is removed by the teardown.
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// The CNI configuration directory the daemon reads (empty at the start).
    pub cni_conf_dir: PathBuf,
    daemon: Option<Child>,
    /// The daemon's command line.
    argv: Vec<String>,
    /// The registry relay into the daemon's network namespace (see [`CriServer::with_registry`]).
    relay: Option<Relay>,
    _tmp: tempfile::TempDir,
}

/// The registries whose images the tests name as kubelet would; [`CriServer::with_registry`]
/// sends them all to the test's registry.
pub const MIRRORED: [&str; 2] = ["docker.io", "registry.k8s.io"];

impl CriServer {
    /// The daemon [`target`] selects, serving.
    pub fn start() -> CriServer {
        match target() {
            Target::Roci => CriServer::roci(&[]),
            Target::Containerd => CriServer::containerd(),
        }
    }

    /// The daemon [`target`] selects, pulling the images of [`MIRRORED`] registries from
    /// `registry` (a plain-HTTP mirror at `127.0.0.1:PORT`, reached through a [`Relay`] in the
    /// daemon's network namespace): roci-cri through its `--registries-config` (`mirrors`),
    /// containerd through `hosts.toml` files under its `registry.config_path`.
    pub fn with_registry(registry: &Registry) -> CriServer {
        CriServer::with_registry_auths(registry, serde_json::json!({}))
    }

    /// [`CriServer::with_registry`], with `auths` (registries.json's credentials) in roci-cri's
    /// registries configuration; containerd gets none.
    pub fn with_registry_auths(registry: &Registry, auths: serde_json::Value) -> CriServer {
        CriServer::target_with_registry(target(), registry, auths)
    }

    /// [`CriServer::with_registry_auths`] for `target`, whatever `ROCI_CRI_TEST_TARGET` says (the
    /// CRI benchmark, tests/bench-cri, runs both daemons side by side).
    pub fn target_with_registry(target: Target, registry: &Registry, auths: serde_json::Value) -> CriServer {
        let mirror = format!("http://{}", registry.host());
        let mut server = match target {
            Target::Roci => CriServer::roci_prepared(&[], |dir| {
                let mirrors: serde_json::Map<String, serde_json::Value> =
                    MIRRORED.iter().map(|r| (r.to_string(), serde_json::json!([mirror]))).collect();
                let config = serde_json::json!({ "mirrors": mirrors, "auths": auths });
                std::fs::write(dir.join("registries.json"), config.to_string()).expect("write registries.json");
            }),
            Target::Containerd => CriServer::containerd_prepared(|dir| {
                for registry in MIRRORED {
                    let hosts = dir.join("certs.d").join(registry);
                    std::fs::create_dir_all(&hosts).expect("create certs.d");
                    let toml = format!(
                        "server = \"https://{registry}\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
                    );
                    std::fs::write(hosts.join("hosts.toml"), toml).expect("write hosts.toml");
                }
            }),
        };
        let pid = server.daemon.as_ref().expect("the daemon runs").id() as i32;
        server.relay = Some(Relay::into_netns(pid, registry.port()));
        server
    }

    /// roci-cri with every path in the temp dir, plus `extra` arguments.
    pub fn roci(extra: &[&str]) -> CriServer {
        CriServer::roci_prepared(extra, |_| {})
    }

    /// [`CriServer::roci`], with `prepare` called on the temp dir before the daemon starts.
    pub fn roci_prepared(extra: &[&str], prepare: impl FnOnce(&Path)) -> CriServer {
        let mut server = CriServer::new(Target::Roci, "roci-cri-");
        let mut args: Vec<String> = vec![roci_cri_binary().to_string_lossy().into_owned()];
        for (flag, path) in [
            ("--socket", server.socket.clone()),
            ("--root", server.dir.join("root")),
            ("--state", server.dir.join("state")),
            ("--cni-conf-dir", server.cni_conf_dir.clone()),
            ("--registries-config", server.dir.join("registries.json")),
            ("--runtime-path", roci_binary()),
        ] {
            args.push(flag.into());
            args.push(path.to_string_lossy().into_owned());
        }
        // As containerd's `restrict_oom_score_adj = true` below: this host refuses a negative
        // oom_score_adj (no CAP_SYS_RESOURCE).
        args.extend(["--cni-bin-dir", "/usr/lib/cni", "--log-level", "debug", "--restrict-oom-score-adj"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        prepare(&server.dir);
        server.spawn(&args);
        server.wait_serving();
        server
    }

    /// Debian containerd, its CRI plugin on, everything in the temp dir.
    pub fn containerd() -> CriServer {
        CriServer::containerd_prepared(|_| {})
    }

    /// [`CriServer::containerd`], with `prepare` called on the temp dir before the daemon starts.
    pub fn containerd_prepared(prepare: impl FnOnce(&Path)) -> CriServer {
        let mut server = CriServer::new(Target::Containerd, "roci-cri-ctd-");
        prepare(&server.dir);
        let config = server.dir.join("config.toml");
        std::fs::write(&config, server.containerd_config()).expect("write containerd's config");
        server.spawn(&["containerd".to_string(), "--config".into(), config.to_string_lossy().into_owned()]);
        server.wait_serving();
        server
    }

    fn new(target: Target, prefix: &str) -> CriServer {
        let tmp = tempfile::Builder::new().prefix(prefix).tempdir().expect("create the server's temp dir");
        let dir = tmp.path().to_path_buf();
        let cni_conf_dir = dir.join("net.d");
        std::fs::create_dir(&cni_conf_dir).expect("create the CNI conf dir");
        CriServer {
            target,
            socket: dir.join("cri.sock"),
            cni_conf_dir,
            dir,
            daemon: None,
            argv: Vec::new(),
            relay: None,
            _tmp: tmp,
        }
    }

    /// containerd 1.6's configuration (version 2): root, state, sockets, the runc runtime's state,
    /// the registry hosts (`certs.d`) and the CNI dirs in the temp dir; `restrict_oom_score_adj`
    /// because the host refuses a negative oom_score_adj; the snapshotters that cannot work here
    /// off instead of probing.
    fn containerd_config(&self) -> String {
        let d = self.dir.display();
        let runc = which("runc");
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "{d}/cri.sock"

[ttrpc]
  address = "{d}/cri.sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "{runc}"
      Root = "{d}/runc-root"
"#,
            runc = runc.display()
        )
    }

    /// Start the daemon again with the same command line (after it was stopped).
    pub fn restart(&mut self) {
        assert!(self.try_wait().is_some(), "restart: the daemon is still running");
        let argv = self.argv.clone();
        self.spawn(&argv);
        self.wait_serving();
    }

    /// Run `argv` in a new network namespace with loopback up; output to `daemon.log`.
    fn spawn(&mut self, argv: &[String]) {
        self.argv = argv.to_vec();
        let log = File::create(self.dir.join("daemon.log")).expect("create daemon.log");
        let child = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", r#"ip link set lo up && exec "$@""#, "sh"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        self.daemon = Some(child);
    }

    /// Wait until the socket accepts connections (or the daemon exited).
    fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.try_wait() {
                panic!("{:?} exited ({status}) before serving; its log:\n{}", self.target, self.log());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} is not serving on {} after 30 s; its log:\n{}",
                self.target,
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's pid (its network namespace is the one the CNI bridge lives in).
    pub fn pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    /// The daemon's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.daemon.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Signal the daemon and wait (up to `timeout`) for it to exit.
    pub fn stop(&mut self, signal: Signal, timeout: Duration) -> Option<ExitStatus> {
        let child = self.daemon.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        kill(Pid::from_raw(child.id() as i32), signal).ok();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub async fn client(&self) -> Client {
        let mut client = Client::connect(&self.socket).await;
        if self.is_containerd() {
            // containerd's CRI plugin accepts connections before it has initialized and answers
            // "server is not initialized yet" until then (seen in CI): wait for a Version answer.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                match client.runtime.version(roci_cri_proto::runtime_v1::VersionRequest::default()).await {
                    Ok(_) => break,
                    Err(e) if e.message().contains("not initialized") && std::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("containerd's CRI does not answer Version: {e:?}; its log:\n{}", self.log()),
                }
            }
        }
        client
    }

    pub fn is_containerd(&self) -> bool {
        self.target == Target::Containerd
    }
}

impl Drop for CriServer {
    fn drop(&mut self) {
        if self.stop(Signal::SIGTERM, Duration::from_secs(10)).is_none() {
            self.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
        kill_processes_naming(&self.dir);
        unmount_under(&self.dir);
        if std::thread::panicking() {
            eprintln!("{:?}'s log ({}):\n{}", self.target, self.dir.display(), self.log());
        }
    }
}

/// The exit status as text for messages (`signal 9`, `code 1`).
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => format!("{status}"),
    }
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{program} is not on PATH (make deps installs it)"))
}

fn kill_processes_naming(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            kill(Pid::from_raw(pid), Signal::SIGKILL).ok();
        }
    }
}

fn unmount_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<String> = roci_integration::host_mount_points().into_iter().filter(|m| m.starts_with(&prefix)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        umount2(point.as_str(), MntFlags::MNT_DETACH).ok();
    }
}

/// The project's CRI client: both services over one HTTP/2 connection to the Unix socket (a
/// clone shares it).
#[derive(Clone)]
pub struct Client {
    pub channel: Channel,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Client {
        let socket = socket.to_path_buf();
        // The URI is required by the endpoint but unused: every connection goes to the socket.
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { UnixStream::connect(socket).await.map(TokioIo::new) }
            }))
            .await
            .expect("connect to the CRI socket");
        Client { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel.clone()), channel }
    }
}
