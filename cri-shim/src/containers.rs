//! Containers between and after RPCs: the watcher on each container's monitor, how an exit is
//! recorded, stopping (stop signal, then SIGKILL), removing, and recovery before serving. No
//! protobuf here: `server/` decodes the requests and calls in.
//!
//! ```text
//!  CreateContainer ── monitor spawned ──▶ watch(id, monitor pid) ─┐ pidfd of the monitor
//!                                                                  ▼ readable: it exited
//!  StopContainer ─ signal the init ─▶ wait_gone ◀─── gone ─── settle(id): exit.json → Exited
//!                                                              (no exit.json → Unknown)
//! ```
//!
//! A monitor exits only after its container's init has exited and the exit record is on disk,
//! so the monitor's pidfd turning readable is the moment to read that record. Every change of
//! a container's record after it was created goes through [`Containers::change`]: the one place
//! where a state change happens (the events RPC hangs off it).
//!
//! Signals go to the init by pidfd once `/proc/<pid>/stat` shows it is the monitor's child
//! (never to a reused pid); when the monitor is gone (Unknown), through `roci kill`, which checks
//! the process against its saved state. Deleting the OCI container runs `roci delete --force`
//! as a short-lived child (it may run hooks: the daemon itself never forks).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libcontainer::monitor::ExitRecord;
use libimage::manager::ImageRoot;
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

use crate::events::{EventKind, Events};
use crate::layout::Layout;
use crate::monitor::{self, MonitorError};
use crate::stats::Sampler;
use crate::store::{ContainerRecord, ContainerState, Kind, Store, StoreError};

/// Wait until the process of `pidfd` (pid `pid`, of the container or pod `id`) has exited.
pub async fn exited(pidfd: OwnedFd, pid: i32, id: &str) {
    // Deprecated because a borrowed raw fd could be closed under the reactor; an OwnedFd moved
    // in is owned by the AsyncFd for its whole life, the sound case (and keeps `unsafe` out of
    // this crate).
    #[allow(deprecated)]
    let registered = AsyncFd::with_interest(pidfd, Interest::READABLE);
    match registered {
        // A pidfd turns readable when its process exits.
        Ok(fd) => drop(fd.readable().await),
        Err(e) => {
            tracing::warn!(id, pid, error = %e, "cannot poll a pidfd: checking the pid every second");
            while Path::new(&format!("/proc/{pid}")).exists() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The exit code of a container whose end is not known (containerd's `unknownExitCode`).
pub const UNKNOWN_EXIT_CODE: i32 = 255;

/// How long a stop waits for the monitor to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(60);
/// How long a removal waits for a created container's monitor after `roci delete --force`.
const DELETE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error("{op} container {id}: {reason}")]
    Failed { op: &'static str, id: String, reason: String },
    #[error("{cmd}: {reason}")]
    Roci { cmd: String, reason: String },
    #[error("stop container {id}: still running {waited:?} after SIGKILL")]
    StillRunning { id: String, waited: Duration },
}

pub type Result<T> = std::result::Result<T, LifecycleError>;

pub use crate::events::now_nanos as now_ns;

/// An RFC 3339 time (the monitor's) in nanoseconds since the epoch; 0 when unreadable.
pub fn parse_time(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).ok().and_then(|t| t.timestamp_nanos_opt()).unwrap_or(0)
}

/// A record moved to Exited from its monitor's exit record: containerd's reasons (`OOMKilled`
/// when the kernel's OOM killer ended it, else `Completed` for 0 and `Error` for the rest).
pub fn apply_exit(r: &mut ContainerRecord, exit: &ExitRecord) {
    r.state = ContainerState::Exited;
    r.exit_code = exit.exit_code;
    r.finished_at = parse_time(&exit.finished_at);
    if r.started_at == 0 {
        r.started_at = exit.started_at.as_deref().map(parse_time).unwrap_or(0);
    }
    r.reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
    .to_owned();
}

pub struct Containers {
    store: Arc<Store>,
    layout: Layout,
    runtime: PathBuf,
    images: Arc<ImageRoot>,
    /// Per watched container: true once its monitor is gone.
    gone: Mutex<HashMap<String, watch::Receiver<bool>>>,
    /// Where a change of state is told (GetContainerEvents).
    events: Events,
    /// The CPU samples of the stats RPCs: a removed container's is dropped.
    sampler: Arc<Sampler>,
}

impl Containers {
    pub fn new(
        store: Arc<Store>,
        layout: Layout,
        runtime: PathBuf,
        images: Arc<ImageRoot>,
        events: Events,
        sampler: Arc<Sampler>,
    ) -> Containers {
        Containers { store, layout, runtime, images, gone: Mutex::new(HashMap::new()), events, sampler }
    }

    /// Change container `id`'s record with `f` (on the blocking pool: the store fsyncs). The one
    /// place a container's state changes after creation (see the module docs).
    pub async fn change(&self, id: &str, f: impl FnOnce(&mut ContainerRecord) + Send + 'static) -> Result<ContainerRecord> {
        let store = self.store.clone();
        let key = id.to_owned();
        let (before, after) = blocking(move || {
            let before = store.container(&key)?.state;
            store.update_container(&key, f).map(|r| (before, r))
        })
        .await?;
        if before != after.state {
            tracing::info!(id, from = ?before, to = ?after.state, exit_code = after.exit_code, reason = after.reason, "container");
            let event = match after.state {
                ContainerState::Created => Some(EventKind::Created),
                ContainerState::Running => Some(EventKind::Started),
                ContainerState::Exited => Some(EventKind::Stopped),
                ContainerState::Creating | ContainerState::Unknown => None,
            };
            if let Some(kind) = event {
                self.events.emit(&after.id, &after.pod_id, kind);
            }
        }
        Ok(after)
    }

    /// Save a new container record (in Creating), reserving its name.
    pub async fn add(&self, record: ContainerRecord) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.create_container(record)).await?;
        Ok(())
    }

    /// Remove container `id`'s record, releasing its name (done already is fine).
    async fn forget(&self, id: &str) -> Result<()> {
        let store = self.store.clone();
        let key = id.to_owned();
        let pod_id = self.store.container(id).ok().map(|r| r.pod_id);
        match blocking(move || store.remove_container(&key)).await {
            Ok(()) | Err(LifecycleError::Store(StoreError::NotFound { .. })) => {}
            Err(e) => return Err(e),
        }
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        self.sampler.forget(id);
        if let Some(pod_id) = pod_id {
            self.events.emit(id, &pod_id, EventKind::Deleted);
        }
        tracing::info!(id, "container removed");
        Ok(())
    }

    /// Watch container `id`'s monitor: when it exits, record how the container ended.
    pub fn watch(self: &Arc<Self>, id: &str, monitor_pid: i32) {
        let (tx, rx) = watch::channel(false);
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), rx);
        let pidfd = self.open_monitor(id, monitor_pid);
        let me = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Some(fd) = pidfd {
                exited(fd, monitor_pid, &id).await;
            }
            tx.send_replace(true);
            let _lock = me.store.lock(&id).await;
            if let Err(e) = me.settle(&id).await {
                tracing::error!(id, error = %e, "record the container's exit");
            }
        });
    }

    /// A pidfd of container `id`'s monitor, if `pid` still is that monitor (its command line,
    /// inherited from `roci monitor CONFIG`, names the container's monitor config).
    fn open_monitor(&self, id: &str, pid: i32) -> Option<OwnedFd> {
        if pid <= 0 {
            return None;
        }
        let fd = libcontainer::sys::pidfd_open(Pid::from_raw(pid)).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let config = self.layout.container_monitor(id).config;
        let wanted = config.as_os_str().as_encoded_bytes();
        cmdline.split(|b| *b == 0).any(|arg| arg == wanted).then_some(fd)
    }

    /// Whether container `id`'s monitor is gone (true at once when nothing watches it).
    pub fn is_gone(&self, id: &str) -> bool {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).get(id).is_none_or(|rx| *rx.borrow())
    }

    /// Wait up to `limit` for container `id`'s monitor to be gone; whether it is.
    pub async fn wait_gone(&self, id: &str, limit: Duration) -> bool {
        let rx = self.gone.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        let Some(mut rx) = rx else { return true };
        tokio::time::timeout(limit, async move { rx.wait_for(|g| *g).await.is_ok() }).await.unwrap_or(false)
    }

    /// With the container's lock held: if its monitor is gone, record how it ended (its exit
    /// record: Exited; none: Unknown). The record as it is now; `None` when there is none.
    pub async fn settle(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let rec = match self.store.container(id) {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !matches!(rec.state, ContainerState::Created | ContainerState::Running) || !self.is_gone(&rec.id) {
            return Ok(Some(rec));
        }
        let exit = monitor::read_exit_record(&self.layout.container_monitor(&rec.id).exit).await?;
        let rec = self
            .change(&rec.id, move |r| match &exit {
                Some(exit) => apply_exit(r, exit),
                None => r.state = ContainerState::Unknown,
            })
            .await?;
        Ok(Some(rec))
    }

    /// What the record says, with an exit the watcher has not recorded yet applied (the exit
    /// record is on disk before the monitor goes): Status and List see an exit at once.
    pub async fn current(&self, rec: ContainerRecord) -> ContainerRecord {
        if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
            return rec;
        }
        match monitor::read_exit_record(&self.layout.container_monitor(&rec.id).exit).await {
            Ok(Some(exit)) => {
                let mut rec = rec;
                apply_exit(&mut rec, &exit);
                rec
            }
            _ => rec,
        }
    }

    /// Send `signal` to the container's init through a pidfd, after checking it is its
    /// monitor's child. False when there is no such process any more.
    fn signal_init(&self, rec: &ContainerRecord, signal: i32) -> Result<bool> {
        let failed = |reason: String| LifecycleError::Failed { op: "signal", id: rec.id.clone(), reason };
        if rec.pid <= 0 {
            return Ok(false);
        }
        let fd = match libcontainer::sys::pidfd_open(Pid::from_raw(rec.pid)) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
            Err(e) => return Err(failed(format!("pidfd_open {}: {e}", rec.pid))),
        };
        if parent_of(rec.pid) != Some(rec.monitor_pid) {
            return Ok(false);
        }
        match libcontainer::sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(&fd), signal) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(failed(format!("signal {signal} to {}: {e}", rec.pid))),
        }
    }

    /// StopContainer with the container's lock held (containerd 1.6's `stopContainer`): only a
    /// running (or unknown) container is stopped; its stop signal (the image's, else SIGTERM),
    /// up to `timeout` for it to exit, then SIGKILL. A created or exited container is left as
    /// it is.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<ContainerRecord> {
        let Some(rec) = self.settle(id).await? else {
            return Err(StoreError::NotFound { kind: Kind::Container, id: id.to_owned() }.into());
        };
        match rec.state {
            ContainerState::Running => {}
            ContainerState::Unknown => {
                // The monitor is gone: what is left of the container is killed through its state.
                if self.oci_exists(&rec.id) {
                    if let Err(e) = self.roci(&["kill", &rec.id, "KILL"]).await {
                        tracing::debug!(id = rec.id, error = %e, "kill a container whose monitor is gone");
                    }
                }
                return self
                    .change(&rec.id, |r| {
                        r.state = ContainerState::Exited;
                        r.exit_code = UNKNOWN_EXIT_CODE;
                        r.reason = "Unknown".into();
                        r.finished_at = now_ns();
                    })
                    .await;
            }
            _ => return Ok(rec),
        }
        if !timeout.is_zero() {
            let signal = match rec.stop_signal.as_str() {
                "" => libc::SIGTERM,
                s => libcontainer::signal::parse(s).unwrap_or_else(|e| {
                    tracing::warn!(id = rec.id, stop_signal = s, error = e, "the image's stop signal: using SIGTERM");
                    libc::SIGTERM
                }),
            };
            tracing::debug!(id = rec.id, signal, ?timeout, "stopping");
            if self.signal_init(&rec, signal)? && self.wait_gone(&rec.id, timeout).await {
                return self.settled(id).await;
            }
        }
        self.signal_init(&rec, libc::SIGKILL)?;
        if !self.wait_gone(&rec.id, KILL_WAIT).await {
            return Err(LifecycleError::StillRunning { id: rec.id, waited: KILL_WAIT });
        }
        self.settled(id).await
    }

    async fn settled(&self, id: &str) -> Result<ContainerRecord> {
        self.settle(id).await?.ok_or_else(|| StoreError::NotFound { kind: Kind::Container, id: id.to_owned() }.into())
    }

    /// RemoveContainer with the container's lock held (containerd 1.6: a running or unknown
    /// container is stopped first, at once): the OCI container, its bundle and snapshot, its
    /// state directory, then the record (the name is free again). An unknown id is done.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let rec = match self.store.container(id) {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if matches!(rec.state, ContainerState::Running | ContainerState::Unknown) {
            self.stop(&rec.id, Duration::ZERO).await?;
        }
        self.dismantle(&rec.id).await?;
        self.forget(&rec.id).await
    }

    /// Undo a create: [`Containers::dismantle`], then the record.
    pub async fn dismantle_and_forget(&self, id: &str) -> Result<()> {
        self.dismantle(id).await?;
        self.forget(id).await
    }

    /// Everything of container `id` on the host but its record: the OCI container (its init
    /// killed), the monitor gone, the bundle and snapshot, the state directory.
    pub async fn dismantle(&self, id: &str) -> Result<()> {
        if self.oci_exists(id) {
            self.roci(&["delete", "--force", id]).await?;
        }
        // The monitor goes once the init is dead: its exit record is written, then its socket
        // removed. (A create cut off by a crash has no watcher: its socket tells.)
        let socket = self.layout.container_monitor(id).socket;
        let deadline = tokio::time::Instant::now() + DELETE_WAIT;
        let gone = self.wait_gone(id, DELETE_WAIT).await;
        while socket.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !gone || socket.exists() {
            tracing::warn!(id, "the monitor is still there after the container was deleted");
        }
        let images = self.images.clone();
        let key = id.to_owned();
        let removed = tokio::task::spawn_blocking(move || images.remove_bundle(&key).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        removed.map_err(|reason| LifecycleError::Failed { op: "remove the bundle of", id: id.to_owned(), reason })?;
        let dir = self.layout.container_dir(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(LifecycleError::Failed { op: "remove the state directory of", id: id.to_owned(), reason: e.to_string() })
            }
        }
    }

    /// Whether libcontainer has state for OCI container `id`.
    fn oci_exists(&self, id: &str) -> bool {
        self.layout.roci_root().join(id).exists()
    }

    /// Run `roci --root <roci root> ARGS` to its end.
    pub async fn roci(&self, args: &[&str]) -> Result<()> {
        run_roci(&self.runtime, &self.layout.roci_root(), args).await
    }

    /// The containers of pod `pod_id`, each stopped at once (StopPodSandbox does this first).
    pub async fn stop_all_of_pod(&self, pod_id: &str) -> Result<()> {
        for rec in self.store.containers().into_iter().filter(|c| c.pod_id == pod_id) {
            let _lock = self.store.lock(&rec.id).await;
            match self.stop(&rec.id, Duration::ZERO).await {
                Ok(_) | Err(LifecycleError::Store(StoreError::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every container of pod `pod_id` removed (RemovePodSandbox does this first). One still
    /// being created is left to its create, which finishes or undoes itself (the pod's removal
    /// is then refused until it is gone: kubelet retries).
    pub async fn remove_all_of_pod(&self, pod_id: &str) -> Result<()> {
        let of_pod = |c: &ContainerRecord| c.pod_id == pod_id && c.state != ContainerState::Creating;
        for rec in self.store.containers().into_iter().filter(of_pod) {
            let _lock = self.store.lock(&rec.id).await;
            self.remove(&rec.id).await?;
        }
        Ok(())
    }

    /// Before serving: every container record checked against the host. A create cut off by a
    /// crash (Creating) is undone; a created or running container whose monitor lives is
    /// watched again; one whose monitor is gone is Exited (its exit record) or Unknown (none);
    /// containers whose pod record is gone are removed. Nothing is started. A container that
    /// cannot be recovered is logged and kept (RemoveContainer retries); the others still are.
    /// Returns how many failed.
    pub async fn recover(self: &Arc<Self>) -> usize {
        let orphans: Vec<String> = self.store.orphans().into_iter().map(|c| c.id).collect();
        let mut failed = 0;
        for rec in self.store.containers() {
            let id = rec.id.clone();
            if let Err(e) = self.recover_one(rec, orphans.contains(&id)).await {
                tracing::error!(id, error = %e, "recovery: container kept as it is");
                failed += 1;
            }
        }
        failed
    }

    async fn recover_one(self: &Arc<Self>, rec: ContainerRecord, orphan: bool) -> Result<()> {
        let id = rec.id.clone();
        match rec.state {
            ContainerState::Creating => {
                tracing::info!(id, "recovery: undo a create cut off by the daemon's end");
                return self.dismantle_and_forget(&id).await;
            }
            ContainerState::Created | ContainerState::Running => {
                if self.open_monitor(&id, rec.monitor_pid).is_some() {
                    self.watch(&id, rec.monitor_pid);
                } else {
                    let rec = self.settle(&id).await?;
                    tracing::info!(id, state = ?rec.map(|r| r.state), "recovery: the monitor is gone");
                }
            }
            ContainerState::Exited | ContainerState::Unknown => {}
        }
        if orphan {
            tracing::info!(id, "recovery: remove a container whose pod is gone");
            self.remove(&id).await?;
        }
        Ok(())
    }
}

/// Run `RUNTIME --root ROOT ARGS` (a short-lived child: the daemon itself never forks) and wait;
/// its stderr on failure.
pub async fn run_roci(runtime: &Path, root: &Path, args: &[&str]) -> Result<()> {
    let cmd = format!("{} --root {} {}", runtime.display(), root.display(), args.join(" "));
    let out = tokio::process::Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| LifecycleError::Roci { cmd: cmd.clone(), reason: e.to_string() })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(LifecycleError::Roci { cmd, reason: format!("{}: {stderr}", out.status) });
    }
    Ok(())
}

/// The parent pid of `pid` (from `/proc/<pid>/stat`).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::result::Result<T, StoreError> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LifecycleError::Failed { op: "run a blocking task for", id: String::new(), reason: e.to_string() })?
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ContainerRecord {
        ContainerRecord {
            version: crate::store::RECORD_VERSION,
            id: "c".repeat(64),
            pod_id: "p".repeat(64),
            metadata: crate::store::ContainerMetadata { name: "c".into(), attempt: 0 },
            state: ContainerState::Running,
            created_at: 1,
            started_at: 2,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 10,
            monitor_pid: 9,
            stop_signal: String::new(),
            cgroups_path: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:00".into(),
            labels: Default::default(),
            annotations: Default::default(),
            log_path: None,
            config: vec![],
            resources: None,
        }
    }

    fn exit(code: i32, oom: bool) -> ExitRecord {
        ExitRecord {
            version: 1,
            pid: 10,
            exit_code: code,
            signal: None,
            started_at: Some("2026-12-07T10:00:00.5Z".into()),
            finished_at: "2026-12-07T10:00:01.000000002Z".into(),
            oom_killed: oom,
        }
    }

    #[test]
    fn exits_get_containerds_reasons() {
        for (code, oom, reason) in
            [(0, false, "Completed"), (3, false, "Error"), (137, true, "OOMKilled"), (0, true, "OOMKilled")]
        {
            let mut r = record();
            apply_exit(&mut r, &exit(code, oom));
            assert_eq!((r.state, r.exit_code, r.reason.as_str()), (ContainerState::Exited, code, reason));
            assert_eq!(r.finished_at, 1_796_637_601_000_000_002);
            assert_eq!(r.started_at, 2, "a recorded start stays");
        }
        let mut r = record();
        r.started_at = 0;
        apply_exit(&mut r, &exit(0, false));
        assert_eq!(r.started_at, 1_796_637_600_500_000_000, "the monitor's start when none was recorded");
    }

    /// A store with one pod and `records`, and the Containers over it (runtime: /bin/false,
    /// never run: no OCI state exists).
    fn containers(dir: &Path, records: &[ContainerRecord]) -> Arc<Containers> {
        let store = Arc::new(Store::open(&dir.join("root")).unwrap());
        let pod = crate::store::PodRecord {
            version: crate::store::RECORD_VERSION,
            id: "p".repeat(64),
            metadata: crate::store::PodMetadata { name: "p".into(), uid: "u".into(), namespace: "n".into(), attempt: 0 },
            state: crate::store::PodState::Creating,
            created_at: 1,
            labels: Default::default(),
            annotations: Default::default(),
            runtime_handler: String::new(),
            netns: None,
            ips: vec![],
            pid: 0,
            cgroups_path: String::new(),
            image: String::new(),
            config: vec![],
        };
        store.create_pod(pod).unwrap();
        for r in records {
            let state = r.state;
            let mut creating = r.clone();
            creating.state = ContainerState::Creating;
            store.create_container(creating).unwrap();
            // The records reach their state the way the lifecycle allows.
            let path: &[ContainerState] = match state {
                ContainerState::Creating => &[],
                ContainerState::Created => &[ContainerState::Created],
                ContainerState::Running => &[ContainerState::Created, ContainerState::Running],
                ContainerState::Exited => &[ContainerState::Created, ContainerState::Exited],
                ContainerState::Unknown => &[ContainerState::Created, ContainerState::Unknown],
            };
            for s in path {
                store.update_container(&r.id, |x| x.state = *s).unwrap();
            }
        }
        let images = Arc::new(ImageRoot::open(&dir.join("root/images")).unwrap());
        Arc::new(Containers::new(
            store,
            Layout::new(&dir.join("state")),
            PathBuf::from("/bin/false"),
            images,
            Events::default(),
            Arc::new(Sampler::new()),
        ))
    }

    #[tokio::test]
    async fn recovery_settles_what_happened_while_the_daemon_was_away() {
        let dir = tempfile::tempdir().unwrap();
        let with_id = |c: char, state: ContainerState, name: &str| {
            let mut r = record();
            r.id = c.to_string().repeat(64);
            r.metadata.name = name.into();
            r.state = state;
            // No such monitor: pid 0 is never one.
            r.monitor_pid = 0;
            r
        };
        let exited = with_id('a', ContainerState::Running, "exited");
        let vanished = with_id('b', ContainerState::Running, "vanished");
        let cut_off = with_id('d', ContainerState::Creating, "cut-off");
        let done = with_id('e', ContainerState::Exited, "done");
        let c = containers(dir.path(), &[exited.clone(), vanished.clone(), cut_off.clone(), done.clone()]);
        let layout = Layout::new(&dir.path().join("state"));
        // `exited` left an exit record; `cut_off` left a state dir.
        let files = layout.container_monitor(&exited.id);
        std::fs::create_dir_all(files.exit.parent().unwrap()).unwrap();
        std::fs::write(&files.exit, serde_json::to_vec(&exit(7, false)).unwrap()).unwrap();
        std::fs::create_dir_all(layout.container_dir(&cut_off.id)).unwrap();

        assert_eq!(c.recover().await, 0);
        let got = c.store.container(&exited.id).unwrap();
        assert_eq!((got.state, got.exit_code, got.reason.as_str()), (ContainerState::Exited, 7, "Error"));
        assert_eq!(c.store.container(&vanished.id).unwrap().state, ContainerState::Unknown);
        assert!(c.store.container(&cut_off.id).is_err(), "a cut-off create is undone");
        assert!(!layout.container_dir(&cut_off.id).exists());
        assert_eq!(c.store.container(&done.id).unwrap().state, ContainerState::Exited);

        // Stopping the Unknown one ends it as containerd records a lost task.
        let stopped = c.stop(&vanished.id, Duration::from_secs(1)).await.unwrap();
        assert_eq!((stopped.state, stopped.exit_code, stopped.reason.as_str()), (ContainerState::Exited, 255, "Unknown"));
        // Removal frees the record (nothing of the OCI container exists).
        c.remove(&exited.id).await.unwrap();
        assert!(c.store.container(&exited.id).is_err());
        c.remove(&exited.id).await.expect("removing twice is fine");
    }

    #[test]
    fn parent_of_reads_stat() {
        assert_eq!(parent_of(std::process::id() as i32), Some(nix::unistd::getppid().as_raw()));
        assert_eq!(parent_of(-1), None);
    }
}
