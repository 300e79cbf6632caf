//! CreateContainer, as containerd 1.6: the pod must exist (NotFound) and be ready, the image
//! must be here already (kubelet pulls first); then, as one change that is rolled back as a
//! whole on failure (or when the daemon dies: recovery undoes a record left in Creating):
//!
//! 1. the record in Creating (the name reserved; the request's bytes kept);
//! 2. the rootfs: a snapshot of the image mounted in the bundle;
//! 3. the spec ([`spec::container_spec`]) with the pod's namespaces and files;
//! 4. the mount sources that do not exist (containerd creates them, mode 0755) and the image's
//!    volumes, seeded from the image;
//! 5. `config.json`, the log file's directory;
//! 6. the monitor, which creates the OCI container (its init waits for StartContainer);
//! 7. the record in Created with the init's and the monitor's pids, and a watcher on the monitor.
//!
//! A client that gives up (its deadline passes, it disconnects) gets the whole create undone at
//! the next step, as containerd's cancelled context does: kubelet retries with the same name,
//! which must then be free.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::containers::lifecycle_status;
use super::spec::{self, ContainerInputs, PodNamespaces, SandboxFiles};
use super::wanted::Wanted;
use super::Cri;
use crate::containers::{now_ns, LifecycleError};
use crate::store::{self, ContainerMetadata, ContainerRecord, ContainerState, PodRecord, PodState, Rollback};

const RPC: &str = "CreateContainer";

pub async fn create_container(cri: &Arc<Cri>, req: v1::CreateContainerRequest) -> Result<v1::CreateContainerResponse, Status> {
    let config = req.config.ok_or_else(|| Status::invalid_argument(format!("{RPC}: config: missing")))?;
    let meta = config.metadata.clone().ok_or_else(|| Status::invalid_argument(format!("{RPC}: config.metadata: missing")))?;
    if meta.name.is_empty() {
        return Err(Status::invalid_argument(format!("{RPC}: config.metadata.name: empty")));
    }
    if req.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument(format!("{RPC}: pod_sandbox_id: empty")));
    }
    let pod = cri.store.pod(&req.pod_sandbox_id).map_err(|e| lifecycle_status(RPC, e.into()))?;
    if pod.state != PodState::Ready {
        // containerd 1.6: "sandbox ... is not running" (Unknown there).
        return Err(Status::failed_precondition(format!("{RPC}: pod sandbox {} is not ready", pod.id)));
    }
    let sandbox = match req.sandbox_config {
        Some(s) => s,
        None => v1::PodSandboxConfig::decode(pod.config.as_slice())
            .map_err(|e| Status::internal(format!("{RPC}: pod sandbox {}: the stored config does not decode: {e}", pod.id)))?,
    };
    if config.stdin_once {
        // The monitor closes stdin after the first attach; there is no attach in this build.
        return Err(Status::failed_precondition(format!(
            "{RPC}: config.stdin_once: not supported by this build (it needs Attach, which roci-cri does not serve yet)"
        )));
    }
    let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
    if image_name.is_empty() {
        return Err(Status::invalid_argument(format!("{RPC}: config.image.image: empty")));
    }
    let (image, image_config) = cri
        .images
        .local(&image_name)
        .await
        .map_err(|e| super::image_status(RPC, e))?
        // containerd 1.6: `failed to resolve image "...": not found` (NotFound).
        .ok_or_else(|| Status::not_found(format!("{RPC}: failed to resolve image {image_name:?}: not found")))?;
    let log_path = if config.log_path.is_empty() {
        None
    } else {
        let p = Path::new(&sandbox.log_directory).join(&config.log_path);
        if !p.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "{RPC}: sandbox_config.log_directory: {:?} with config.log_path {:?} is not an absolute path",
                sandbox.log_directory, config.log_path
            )));
        }
        Some(p)
    };
    let stop_signal = match v1::Signal::try_from(config.stop_signal) {
        Ok(v1::Signal::RuntimeDefault) | Err(_) => image_config.config().as_ref().and_then(|c| c.stop_signal().clone()),
        Ok(s) => Some(s.as_str_name().to_owned()),
    }
    .unwrap_or_default();

    let id = cri.store.new_id().map_err(|e| lifecycle_status(RPC, e.into()))?;
    let record = ContainerRecord {
        version: store::RECORD_VERSION,
        id: id.clone(),
        pod_id: pod.id.clone(),
        metadata: ContainerMetadata { name: meta.name.clone(), attempt: meta.attempt },
        state: ContainerState::Creating,
        created_at: now_ns(),
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        pid: 0,
        monitor_pid: 0,
        stop_signal,
        cgroups_path: String::new(),
        image: image_name.clone(),
        image_ref: image.config.to_string(),
        labels: config.labels.clone().into_iter().collect(),
        annotations: config.annotations.clone().into_iter().collect(),
        log_path: log_path.clone(),
        config: config.encode_to_vec(),
        resources: None,
    };
    let rollback = Rollback::new(format!("create container {id}"));
    let wanted = Wanted::new(RPC, "container");
    let work = Work {
        cri: cri.clone(),
        rollback: rollback.clone(),
        wanted: wanted.clone(),
        pod,
        config,
        sandbox,
        image,
        image_config,
        record,
    };
    let done = store::change(rollback, work.run()).await;
    wanted.answered();
    match done {
        Ok(()) => Ok(v1::CreateContainerResponse { container_id: id }),
        Err(store::ChangeError::Failed { source, undo_failures }) => {
            if !undo_failures.is_empty() {
                tracing::error!(id, ?undo_failures, "a failed create was not wholly undone");
            }
            Err(source)
        }
        Err(e @ store::ChangeError::Interrupted { .. }) => Err(Status::unknown(format!("{RPC}: {e}"))),
    }
}

struct Work {
    cri: Arc<Cri>,
    rollback: Rollback,
    wanted: Wanted,
    pod: PodRecord,
    config: v1::ContainerConfig,
    sandbox: v1::PodSandboxConfig,
    image: libimage::images::Image,
    image_config: oci_spec::image::ImageConfiguration,
    record: ContainerRecord,
}

fn internal(what: impl std::fmt::Display) -> Status {
    Status::internal(format!("{RPC}: {what}"))
}

impl Work {
    async fn run(self) -> Result<(), Status> {
        let Work { cri, rollback, wanted, pod, config, sandbox, image, image_config, record } = self;
        let id = record.id.clone();
        let containers = cri.containers.clone();

        // 1. The record: the name is reserved from here on.
        containers.add(record.clone()).await.map_err(|e| lifecycle_status(RPC, e))?;
        {
            let (c, id) = (containers.clone(), id.clone());
            rollback.push("save the record", move || async move { c.dismantle_and_forget(&id).await.map_err(|e| e.to_string()) });
        }

        wanted.check(&id)?;
        // 2. The rootfs (undone with the record: dismantle removes the bundle).
        let root = cri.images.image_root().clone();
        let (key, img) = (id.clone(), image.clone());
        let bundle = tokio::task::spawn_blocking(move || root.make_rootfs(&key, &img))
            .await
            .map_err(internal)?
            .map_err(|e| internal(format!("make the rootfs of container {id}: {e}")))?;
        let rootfs = bundle.join("rootfs");

        wanted.check(&id)?;
        // 3. The spec.
        let (namespaces, files) = pod_environment(&cri, &pod)?;
        let target = target_pid_namespace(&cri, &pod, &config)?;
        let container_dir = cri.layout.container_dir(&id);
        let volumes_dir = container_dir.join("volumes");
        let seccomp_dir = cri.config.seccomp_profile_root.clone();
        let (cfg, sb, ic, host) = (config.clone(), sandbox.clone(), image_config.clone(), cri.host.clone());
        let (key, pod_id, name, rfs) = (id.clone(), pod.id.clone(), record.image.clone(), rootfs.clone());
        let (vd, tg) = (volumes_dir.clone(), target.clone());
        let built = tokio::task::spawn_blocking(move || {
            let inputs = ContainerInputs {
                id: &key,
                sandbox_id: &pod_id,
                image_name: &name,
                rootfs: &rfs,
                pod_namespaces: &namespaces,
                target_pid_namespace: tg.as_deref(),
                sandbox_files: &files,
                volumes_dir: &vd,
                seccomp_profile_dir: &seccomp_dir,
            };
            spec::container_spec(&cfg, &sb, &ic, &inputs, &host)
        })
        .await
        .map_err(internal)?
        .map_err(|e| {
            let s: Status = e.into();
            Status::new(s.code(), format!("{RPC}: {}", s.message()))
        })?;

        wanted.check(&id)?;
        // 4. Missing mount sources, image volumes.
        for dir in &built.host_dirs {
            let made = make_dirs(dir).map_err(|e| internal(format!("create the mount source {}: {e}", dir.display())))?;
            rollback.push(format!("create {}", dir.display()), move || async move {
                for d in made.iter().rev() {
                    std::fs::remove_dir(d).map_err(|e| format!("remove {}: {e}", d.display()))?;
                }
                Ok(())
            });
        }
        for v in &built.image_volumes {
            std::fs::create_dir_all(&v.host_path)
                .map_err(|e| internal(format!("create the image volume {}: {e}", v.host_path.display())))?;
            let root = cri.images.image_root().clone();
            let (rfs, dest, dir) = (rootfs.clone(), v.container_path.clone(), v.host_path.clone());
            tokio::task::spawn_blocking(move || root.seed_volume(&rfs, &dest, &dir))
                .await
                .map_err(internal)?
                .map_err(|e| internal(format!("seed the image volume {}: {e}", v.container_path)))?;
        }

        wanted.check(&id)?;
        // 5. config.json and the log's directory.
        let spec_json = serde_json::to_vec_pretty(&built.spec).map_err(internal)?;
        write_atomic(&bundle.join("config.json"), &spec_json).map_err(internal)?;
        if let Some(dir) = record.log_path.as_ref().and_then(|p| p.parent()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| internal(format!("create the log directory {}: {e}", dir.display())))?;
        }

        wanted.check(&id)?;
        // 6. The monitor, which creates the container.
        let files = cri.layout.container_monitor(&id);
        let monitor_config = libcontainer::monitor::Config {
            version: libcontainer::monitor::proto::VERSION,
            id: id.clone(),
            root: cri.layout.roci_root(),
            bundle: bundle.clone(),
            log_path: record.log_path.clone(),
            exit_path: files.exit.clone(),
            socket_path: files.socket.clone(),
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            tty: config.tty,
        };
        let spawned =
            crate::monitor::spawn(&cri.runtime, &files.config, &monitor_config, Some(&files.log)).await.map_err(|e| match e {
                crate::monitor::MonitorError::Create { .. } => Status::unknown(format!("{RPC}: {e}")),
                e => internal(e),
            })?;
        containers.watch(&id, spawned.monitor_pid);
        let cgroups_path = built.spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()).unwrap_or_default();

        wanted.check(&id)?;
        // 7. Created, watched.
        let cgroups_path = cgroups_path.to_string_lossy().into_owned();
        containers
            .change(&id, move |r| {
                r.state = ContainerState::Created;
                r.pid = spawned.pid;
                r.monitor_pid = spawned.monitor_pid;
                r.cgroups_path = cgroups_path;
            })
            .await
            .map_err(|e: LifecycleError| lifecycle_status(RPC, e))?;
        tracing::info!(id, pod = pod.id, name = meta_name(&config), pid = spawned.pid, "container created");
        Ok(())
    }
}

fn meta_name(config: &v1::ContainerConfig) -> &str {
    config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

/// The pod's namespaces (the pause container's, the pinned network namespace) and the files
/// its containers get.
fn pod_environment(cri: &Cri, pod: &PodRecord) -> Result<(PodNamespaces, SandboxFiles), Status> {
    let sandbox = super::sandbox::Sandbox::of(pod.clone())?;
    Ok((sandbox.namespaces(), sandbox.files(&cri.layout)))
}

/// With `namespace_options.pid` TARGET: the PID namespace of the running container of the pod
/// that `target_id` names.
fn target_pid_namespace(cri: &Cri, pod: &PodRecord, config: &v1::ContainerConfig) -> Result<Option<PathBuf>, Status> {
    let ns = config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.as_ref());
    let Some(ns) = ns.filter(|n| n.pid == v1::NamespaceMode::Target as i32) else { return Ok(None) };
    let field = "config.linux.security_context.namespace_options.target_id";
    let target = cri.store.container(&ns.target_id).map_err(|e| Status::not_found(format!("{RPC}: {field}: {e}")))?;
    if target.pod_id != pod.id || target.state != ContainerState::Running {
        return Err(Status::invalid_argument(format!(
            "{RPC}: {field}: {:?} is not a running container of pod sandbox {}",
            ns.target_id, pod.id
        )));
    }
    Ok(Some(PathBuf::from(format!("/proc/{}/ns/pid", target.pid))))
}

/// Create `dir` and its missing parents (mode 0755); the ones created, outermost first.
fn make_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.exists()) {
        missing.push(d.to_owned());
        cur = d.parent();
    }
    missing.reverse();
    for d in &missing {
        std::fs::DirBuilder::new().mode(0o755).create(d)?;
    }
    Ok(missing)
}

/// Write `path` through a temp file renamed over it.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_dirs_reports_what_it_created() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("a/b/c");
        let made = make_dirs(&deep).unwrap();
        assert_eq!(made, [t.path().join("a"), t.path().join("a/b"), deep.clone()]);
        assert!(make_dirs(&deep).unwrap().is_empty(), "nothing to create the second time");
    }
}
