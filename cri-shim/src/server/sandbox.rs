//! A pod's runtime pieces, shared by the pod RPCs (`run_pod_sandbox.rs`, `stop_pod_sandbox.rs`,
//! ...) and the container RPCs: what a container of the pod joins and binds, and how the pause
//! container is looked at and ended.
//!
//! - [`Sandbox::of`]: a pod record with its `PodSandboxConfig` decoded (the record keeps the bytes
//!   as sent).
//! - [`Sandbox::namespaces`]: the pod's namespaces for a container's spec: the pinned network
//!   namespace (or the pause's own with host network), the pause's `/proc/<pid>/ns/{ipc,uts,pid}`.
//! - [`Sandbox::files`]: the pod's hostname, hosts, resolv.conf and `/dev/shm` on the host.
//! - [`Sandbox::cgroup_parent`]: the `cgroup_parent` the pod was made with.
//! - [`pause_state`]: whether the pause runs, from its exit record and its process.
//! - [`watch_pause`]: a pause that dies on its own makes its pod NotReady, with its event.
//! - [`kill_init`] / [`wait_exit`]: signal a monitor's child by pidfd (after checking it is the
//!   monitor's running child), wait for the monitor's exit record. For the pause container and for
//!   any container.
//! - [`roci_delete`]: `roci --root <roci root> delete --force ID`, a short-lived child of the
//!   daemon (the daemon never forks into a container).
//! - [`store_status`]: a store error as the gRPC status containerd returns for it.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libcontainer::monitor::{ExitRecord, Status as MonitorStatus};
use nix::unistd::Pid;
use prost::Message;
use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;
use v1::NamespaceMode;

use super::spec::{PodNamespaces, SandboxFiles};
use super::Cri;
use crate::events::EventKind;
use crate::layout::{Layout, MonitorFiles};
use crate::monitor::{self, MonitorError};
use crate::network::{self, PodIdentity, PodRequest, RuntimeArgs};
use crate::store::{PodRecord, PodState, StoreError};

/// A pod: its record and the config it was made with.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub record: PodRecord,
    pub config: v1::PodSandboxConfig,
}

impl Sandbox {
    /// The pod of `record`, its config decoded from the bytes kept in the record.
    pub fn of(record: PodRecord) -> Result<Sandbox, Status> {
        let config = v1::PodSandboxConfig::decode(record.config.as_slice()).map_err(|e| {
            Status::internal(format!("pod sandbox {}: decode the PodSandboxConfig kept in its record: {e}", record.id))
        })?;
        Ok(Sandbox { record, config })
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The pod's namespace options (NamespaceOption's defaults when unset: every mode POD).
    pub fn namespace_options(&self) -> v1::NamespaceOption {
        namespace_options(&self.config)
    }

    /// The pod uses the node's network namespace.
    pub fn host_network(&self) -> bool {
        self.namespace_options().network == NamespaceMode::Node as i32
    }

    /// The pod uses the node's IPC namespace (and the host's `/dev/shm`).
    pub fn host_ipc(&self) -> bool {
        self.namespace_options().ipc == NamespaceMode::Node as i32
    }

    /// The pod's `linux.cgroup_parent` as sent (containers' cgroups go beside the pause's).
    pub fn cgroup_parent(&self) -> &str {
        self.config.linux.as_ref().map(|l| l.cgroup_parent.as_str()).unwrap_or("")
    }

    /// The namespaces a container of the pod joins. The network namespace is the pinned one (it
    /// outlives the pause); with host network it is the pause's, which is the host's. IPC, UTS and
    /// PID are the pause's, valid while it runs ([`pause_state`]).
    pub fn namespaces(&self) -> PodNamespaces {
        let ns = |kind: &str| PathBuf::from(format!("/proc/{}/ns/{kind}", self.record.pid));
        PodNamespaces {
            network: self.record.netns.clone().unwrap_or_else(|| ns("net")),
            ipc: ns("ipc"),
            uts: ns("uts"),
            pid: ns("pid"),
        }
    }

    /// The pod's files every container binds: hostname, hosts, resolv.conf under the pod's
    /// directory; `/dev/shm` the pod's tmpfs, or the host's with host IPC.
    pub fn files(&self, layout: &Layout) -> SandboxFiles {
        let id = self.id();
        SandboxFiles {
            hostname: Some(layout.pod_hostname(id)),
            hosts: layout.pod_hosts(id),
            resolv_conf: layout.pod_resolv_conf(id),
            shm: if self.host_ipc() { PathBuf::from(super::spec::defaults::DEV_SHM) } else { layout.pod_shm(id) },
        }
    }

    /// What the pod's network setup and teardown are given: its id, its identity in `CNI_ARGS`,
    /// its port mappings (those with a host port, as containerd) and bandwidth annotations.
    pub fn network_request(&self) -> Result<PodRequest, Status> {
        network_request(self.id(), &self.config)
    }

    /// The pause container's monitor files.
    pub fn monitor(&self, layout: &Layout) -> MonitorFiles {
        layout.pod_monitor(self.id())
    }
}

pub(super) fn namespace_options(config: &v1::PodSandboxConfig) -> v1::NamespaceOption {
    config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.clone()).unwrap_or_default()
}

/// See [`Sandbox::network_request`].
pub(super) fn network_request(id: &str, config: &v1::PodSandboxConfig) -> Result<PodRequest, Status> {
    let meta = config.metadata.clone().unwrap_or_default();
    let mut port_mappings = Vec::new();
    for (n, p) in config.port_mappings.iter().enumerate() {
        if p.host_port <= 0 {
            continue;
        }
        let field = |what: &str| format!("config.port_mappings[{n}].{what}");
        let port = |v: i32, what: &str| {
            u16::try_from(v).map_err(|_| Status::invalid_argument(format!("{}: {v} is not a port number", field(what))))
        };
        let protocol = match v1::Protocol::try_from(p.protocol) {
            Ok(v1::Protocol::Tcp) => network::Protocol::Tcp,
            Ok(v1::Protocol::Udp) => network::Protocol::Udp,
            Ok(v1::Protocol::Sctp) => network::Protocol::Sctp,
            Err(_) => return Err(Status::invalid_argument(format!("{}: unknown protocol {}", field("protocol"), p.protocol))),
        };
        port_mappings.push(network::PortMapping {
            host_port: port(p.host_port, "host_port")?,
            container_port: port(p.container_port, "container_port")?,
            protocol,
            host_ip: p.host_ip.clone(),
        });
    }
    let bandwidth = network::Bandwidth::from_pod_annotations(&config.annotations)
        .map_err(|e| Status::invalid_argument(format!("config.annotations[{:?}]: {e}", e.annotation)))?;
    Ok(PodRequest {
        id: id.to_owned(),
        pod: PodIdentity { namespace: meta.namespace, name: meta.name, uid: meta.uid },
        runtime: RuntimeArgs { port_mappings, bandwidth },
    })
}

/// What became of a pause (or any monitored) container's init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitState {
    /// Never created (pid 0 in the record).
    None,
    Running,
    /// The monitor's exit record says how it ended.
    Exited(ExitRecord),
    /// Gone without an exit record (its monitor was killed too).
    Gone,
}

impl InitState {
    pub fn running(&self) -> bool {
        matches!(self, InitState::Running)
    }

    /// containerd's `processStatus` words.
    pub fn as_str(&self) -> &'static str {
        match self {
            InitState::None => "unknown",
            InitState::Running => "running",
            InitState::Exited(_) | InitState::Gone => "stopped",
        }
    }
}

/// The state of the init `pid` watched by the monitor of `files`: the exit record first (the
/// monitor writes it once it has reaped the init), then the process itself (a monitor killed with
/// its init leaves no record). A zombie is dead.
pub async fn init_state(files: &MonitorFiles, pid: i32) -> InitState {
    if pid <= 0 {
        return InitState::None;
    }
    match monitor::read_exit_record(&files.exit).await {
        Ok(Some(record)) => return InitState::Exited(record),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "read an exit record"),
    }
    if process_alive(pid) {
        InitState::Running
    } else {
        // The monitor may have written the record between the two looks.
        match monitor::read_exit_record(&files.exit).await {
            Ok(Some(record)) => InitState::Exited(record),
            _ => InitState::Gone,
        }
    }
}

/// The pause container's state.
pub async fn pause_state(layout: &Layout, pod: &PodRecord) -> InitState {
    init_state(&layout.pod_monitor(&pod.id), pod.pid).await
}

/// `/proc/<pid>` exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name's closing parenthesis.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()).is_some_and(|s| s != 'Z' && s != 'X')
}

/// Send `signal` to init `pid` of the container `id` whose monitor has `files`: by pidfd, once the
/// monitor says that pid is its running child (a pidfd opened before that answer cannot name a
/// reused pid: the monitor had not reaped its child yet). When the monitor does not answer (it was
/// killed), `roci kill` does it with roci's own state checks. An init that has exited is done.
pub async fn kill_init(cri: &Cri, id: &str, files: &MonitorFiles, pid: i32, signal: i32) -> Result<(), Status> {
    if pid <= 0 || !matches!(init_state(files, pid).await, InitState::Running) {
        return Ok(());
    }
    let pidfd = match libcontainer::sys::pidfd_open(Pid::from_raw(pid)) {
        Ok(fd) => fd,
        // ESRCH: it is gone (and reaped) already.
        Err(e) if e.raw_os_error() == Some(libc_esrch()) => return Ok(()),
        Err(e) => return Err(Status::internal(format!("{id}: pidfd_open({pid}): {e}"))),
    };
    match monitor::Client::new(&files.socket).state().await {
        Ok(state) if state.pid == pid && state.status != MonitorStatus::Exited => {
            match libcontainer::sys::pidfd_send_signal(pidfd.as_fd(), signal) {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc_esrch()) => Ok(()),
                Err(e) => Err(Status::internal(format!("{id}: signal {signal} to its init {pid}: {e}"))),
            }
        }
        Ok(_) => Ok(()),
        Err(MonitorError::Io { .. }) => {
            tracing::warn!(id, pid, "the monitor does not answer: signalling through roci kill");
            roci(cri, &["kill", id, &signal.to_string()]).await.or_else(|e| {
                if e.contains("not running") || e.contains("does not exist") || e.contains("stopped") {
                    Ok(())
                } else {
                    Err(Status::internal(format!("{id}: roci kill {signal}: {e}")))
                }
            })
        }
        Err(e) => Err(Status::internal(format!("{id}: ask its monitor: {e}"))),
    }
}

fn libc_esrch() -> i32 {
    nix::errno::Errno::ESRCH as i32
}

/// Wait up to `timeout` for init `pid` to be gone (its exit record written, or the process gone
/// when its monitor is). The state at the end.
pub async fn wait_exit(files: &MonitorFiles, pid: i32, timeout: Duration) -> InitState {
    let deadline = Instant::now() + timeout;
    loop {
        let state = init_state(files, pid).await;
        if !state.running() || Instant::now() >= deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Watch pod `id`'s pause (init `pid`, running): when it exits while the pod is still Ready, it
/// died on its own (StopPodSandbox marks the pod NotReady under the pod's lock before it lets go
/// of it), and the pod becomes NotReady with its STOPPED event sent, as containerd 1.7+ handles a
/// sandbox's exit. Its network, `/dev/shm` and containers stay until StopPodSandbox or
/// RemovePodSandbox, as recovery leaves a pod whose pause died while the daemon was away.
pub fn watch_pause(cri: &Arc<Cri>, id: &str, pid: i32) {
    let pidfd = match libcontainer::sys::pidfd_open(Pid::from_raw(pid)) {
        Ok(fd) => fd,
        // Gone already: the pod's status and the next stop see it.
        Err(e) => return tracing::debug!(pod = id, pid, error = %e, "no pidfd of the pause to watch"),
    };
    let (cri, id) = (cri.clone(), id.to_owned());
    tokio::spawn(async move {
        crate::containers::exited(pidfd, pid, &id).await;
        let _lock = cri.store.lock(&id).await;
        match cri.store.pod(&id) {
            Ok(r) if r.state == PodState::Ready && r.pid == pid => {}
            _ => return,
        }
        let (store, key) = (cri.store.clone(), id.clone());
        match blocking("the pause's exit", move || store.update_pod(&key, |r| r.state = PodState::NotReady)).await {
            Ok(_) => {
                tracing::info!(pod = id, pid, "the pause exited on its own: NotReady");
                cri.events.emit(&id, &id, EventKind::Stopped);
            }
            Err(e) => tracing::error!(pod = id, error = %e, "mark a pod whose pause exited NotReady"),
        }
    });
}

/// Kill the pause container (SIGKILL, as containerd stops a sandbox) and wait for its monitor's
/// exit record. Done when it has exited already.
pub async fn stop_pause(cri: &Cri, pod: &PodRecord) -> Result<(), Status> {
    let files = cri.layout.pod_monitor(&pod.id);
    kill_init(cri, &pod.id, &files, pod.pid, nix::sys::signal::Signal::SIGKILL as i32).await?;
    match wait_exit(&files, pod.pid, Duration::from_secs(10)).await {
        InitState::Running => Err(Status::deadline_exceeded(format!(
            "stop pod sandbox {}: its pause process {} still runs 10 s after SIGKILL",
            pod.id, pod.pid
        ))),
        _ => Ok(()),
    }
}

/// Run `roci --root <roci root> ARGS` and wait; what failed, with its stderr.
pub async fn roci(cri: &Cri, args: &[&str]) -> Result<(), String> {
    crate::containers::run_roci(&cri.runtime, &cri.layout.roci_root(), args).await.map_err(|e| e.to_string())
}

/// `roci delete --force ID`: the OCI container goes with its processes, its cgroup and its state;
/// an id roci does not know is done already.
pub async fn roci_delete(cri: &Cri, id: &str) -> Result<(), String> {
    roci(cri, &["delete", "--force", id]).await
}

/// Unmount `path` (lazily) if it is a mount point; nothing there is done already.
pub fn unmount(path: &Path) -> Result<(), String> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(format!("unmount {}: {e}", path.display())),
    }
}

/// Remove a directory tree; nothing there is done already.
pub fn remove_dir(path: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", path.display())),
    }
}

pub use crate::events::now_nanos;

/// A store error as the gRPC status containerd 1.6 answers: NotFound for an unknown id,
/// FailedPrecondition for a state that does not allow the call, Unknown for a reserved name
/// (containerd returns its reservation error as a plain error), Internal for disk failures.
pub fn store_status(rpc: &str, e: StoreError) -> Status {
    let message = format!("{rpc}: {e}");
    match e {
        StoreError::NotFound { .. } => Status::not_found(message),
        StoreError::Ambiguous { .. } => Status::invalid_argument(message),
        StoreError::NameReserved { .. } | StoreError::Exists { .. } => Status::unknown(message),
        StoreError::Transition { .. } | StoreError::NotRemovable { .. } | StoreError::PodHasContainers { .. } => {
            Status::failed_precondition(message)
        }
        StoreError::Io { .. } | StoreError::Corrupt { .. } => {
            tracing::error!(rpc, error = %e, "store");
            Status::internal(message)
        }
    }
}

/// Run a blocking store call (fsync) on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    rpc: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("{rpc}: the blocking task failed: {e}")))?
        .map_err(|e| store_status(rpc, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Kind, PodMetadata, PodState, RECORD_VERSION};

    fn sandbox(config: v1::PodSandboxConfig) -> Sandbox {
        let record = PodRecord {
            version: RECORD_VERSION,
            id: "a".repeat(64),
            metadata: PodMetadata { name: "p".into(), uid: "u".into(), namespace: "n".into(), attempt: 0 },
            state: PodState::Ready,
            created_at: 1,
            labels: Default::default(),
            annotations: Default::default(),
            runtime_handler: String::new(),
            netns: Some("/run/netns/p".into()),
            ips: vec!["10.88.0.2".into()],
            pid: 4242,
            cgroups_path: "/k8s.io/a".into(),
            image: "registry.k8s.io/pause:3.10".into(),
            config: config.encode_to_vec(),
        };
        Sandbox::of(record).expect("the config decodes")
    }

    fn with_ns(network: NamespaceMode, ipc: NamespaceMode) -> v1::PodSandboxConfig {
        v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata { name: "p".into(), uid: "u".into(), namespace: "n".into(), attempt: 0 }),
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod-u".into(),
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(v1::NamespaceOption {
                        network: network as i32,
                        ipc: ipc as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pods_namespaces_files_and_cgroup_parent() {
        let layout = Layout::new(Path::new("/run/roci/cri"));
        let pod = sandbox(with_ns(NamespaceMode::Pod, NamespaceMode::Pod));
        let ns = pod.namespaces();
        assert_eq!(ns.network, Path::new("/run/netns/p"), "the pinned netns, not the pause's");
        assert_eq!(
            (ns.ipc.as_path(), ns.uts.as_path(), ns.pid.as_path()),
            (Path::new("/proc/4242/ns/ipc"), Path::new("/proc/4242/ns/uts"), Path::new("/proc/4242/ns/pid"))
        );
        let files = pod.files(&layout);
        assert_eq!(files.shm, layout.pod_shm(pod.id()));
        assert_eq!(files.hostname, Some(layout.pod_hostname(pod.id())));
        assert_eq!(files.resolv_conf, layout.pod_resolv_conf(pod.id()));
        assert_eq!(pod.cgroup_parent(), "/kubepods/pod-u");
        assert!(!pod.host_network() && !pod.host_ipc());

        let mut host = sandbox(with_ns(NamespaceMode::Node, NamespaceMode::Node));
        host.record.netns = None;
        assert!(host.host_network() && host.host_ipc());
        assert_eq!(host.namespaces().network, Path::new("/proc/4242/ns/net"));
        assert_eq!(host.files(&layout).shm, Path::new("/dev/shm"), "host IPC: the host's /dev/shm");
    }

    #[test]
    fn network_requests_keep_host_ports_only_and_name_bad_fields() {
        let mut config = with_ns(NamespaceMode::Pod, NamespaceMode::Pod);
        config.port_mappings = vec![
            v1::PortMapping { protocol: v1::Protocol::Tcp as i32, container_port: 80, host_port: 8080, host_ip: String::new() },
            v1::PortMapping { protocol: v1::Protocol::Udp as i32, container_port: 53, host_port: 0, host_ip: String::new() },
            v1::PortMapping { protocol: v1::Protocol::Sctp as i32, container_port: 9, host_port: 9, host_ip: "127.0.0.1".into() },
        ];
        let request = network_request("id1", &config).expect("a request");
        assert_eq!(request.pod, PodIdentity { namespace: "n".into(), name: "p".into(), uid: "u".into() });
        let ports: Vec<_> = request.runtime.port_mappings.iter().map(|p| (p.host_port, p.container_port, p.protocol)).collect();
        assert_eq!(ports, vec![(8080, 80, network::Protocol::Tcp), (9, 9, network::Protocol::Sctp)]);
        assert_eq!(request.runtime.bandwidth, None);

        config.port_mappings[0].container_port = 70000;
        let e = network_request("id1", &config).expect_err("a port out of range");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("config.port_mappings[0].container_port"), "{e:?}");
        config.port_mappings.clear();
        config.annotations.insert("kubernetes.io/ingress-bandwidth".into(), "lots".into());
        let e = network_request("id1", &config).expect_err("a bad bandwidth");
        assert!(e.message().contains("kubernetes.io/ingress-bandwidth"), "{e:?}");
    }

    #[tokio::test]
    async fn an_init_is_running_exited_or_gone() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let files = layout.pod_monitor("p");
        assert_eq!(init_state(&files, 0).await, InitState::None);
        assert_eq!(init_state(&files, std::process::id() as i32).await, InitState::Running);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert_eq!(init_state(&files, pid).await, InitState::Gone, "reaped, no exit record");
        std::fs::create_dir_all(files.exit.parent().unwrap()).unwrap();
        std::fs::write(&files.exit, r#"{"version":1,"pid":7,"exit_code":137,"signal":9,"finished_at":"t","oom_killed":false}"#)
            .unwrap();
        match init_state(&files, std::process::id() as i32).await {
            InitState::Exited(r) => assert_eq!(r.exit_code, 137),
            other => panic!("the exit record wins: {other:?}"),
        }
    }

    #[test]
    fn store_errors_are_containerds_codes() {
        let code = |e| store_status("RPC", e).code();
        assert_eq!(code(StoreError::NotFound { kind: Kind::Pod, id: "x".into() }), tonic::Code::NotFound);
        assert_eq!(
            code(StoreError::NameReserved { kind: Kind::Pod, name: "n".into(), holder: "h".into() }),
            tonic::Code::Unknown
        );
        assert_eq!(
            code(StoreError::NotRemovable { kind: Kind::Pod, id: "x".into(), state: "Ready".into() }),
            tonic::Code::FailedPrecondition
        );
    }
}
