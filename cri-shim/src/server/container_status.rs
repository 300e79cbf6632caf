//! ContainerStatus: the record (with an exit the watcher has not recorded yet applied) as CRI's
//! `ContainerStatus`, as containerd 1.6 fills it: the image as its first tag and the image ref as
//! its first repo digest while the image is here (else the request's image and the image ID), the
//! request's mounts, the full log path, the resources in force; plus the user the spec runs as and
//! the stop signal. `verbose` adds `info`: one JSON object with containerd's keys (`sandboxID`,
//! `pid`, `removing`, `snapshotKey`, `snapshotter`, `runtimeType`, `runtimeSpec`, `config`).

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};
use tonic::Status;

use super::containers::{config_of, cri_state, find, metadata, resources_of, to_map};
use super::Cri;
use crate::store::{ContainerRecord, ContainerState};

const RPC: &str = "ContainerStatus";

pub async fn container_status(cri: &Arc<Cri>, req: &v1::ContainerStatusRequest) -> Result<v1::ContainerStatusResponse, Status> {
    let rec = find(cri, RPC, &req.container_id)?;
    let rec = cri.containers.current(rec).await;
    let config = config_of(&rec)?;
    let (status, spec) = status_of(cri, &rec, &config).await;
    let mut info = std::collections::HashMap::new();
    if req.verbose {
        info.insert("info".to_owned(), verbose_info(&rec, &config, spec).to_string());
    }
    Ok(v1::ContainerStatusResponse { status: Some(status), info })
}

/// The statuses of pod `pod_id`'s containers (but those being created), for PodSandboxStatus and
/// the events (containerd 1.7+ sends them there); one whose stored config cannot be read is left
/// out and logged.
pub(super) async fn statuses_of_pod(cri: &Arc<Cri>, pod_id: &str) -> Vec<v1::ContainerStatus> {
    let mut out = Vec::new();
    for rec in cri.store.containers().into_iter().filter(|c| c.pod_id == pod_id && c.state != ContainerState::Creating) {
        let rec = cri.containers.current(rec).await;
        match config_of(&rec) {
            Ok(config) => out.push(status_of(cri, &rec, &config).await.0),
            Err(e) => tracing::warn!(id = %rec.id, error = %e.message(), "container status"),
        }
    }
    out
}

/// Container `rec`'s status, and its spec as the bundle has it (for the verbose info).
pub(super) async fn status_of(
    cri: &Arc<Cri>,
    rec: &ContainerRecord,
    config: &v1::ContainerConfig,
) -> (v1::ContainerStatus, Option<Value>) {
    let (mut image, mut image_ref) = (config.image.clone(), rec.image_ref.clone());
    if let Ok(Some(found)) = cri.images.status(&rec.image_ref).await {
        if let Some(tag) = found.repo_tags.first() {
            image = Some(v1::ImageSpec { image: tag.clone(), ..Default::default() });
        }
        if let Some(digest) = found.repo_digests.first() {
            image_ref = digest.clone();
        }
    }
    let spec_path = cri.images.image_root().bundle_path(&rec.id).join("config.json");
    let spec: Option<Value> = std::fs::read(&spec_path).ok().and_then(|d| serde_json::from_slice(&d).ok());
    let user = spec.as_ref().map(|s| &s["process"]["user"]).map(|u| v1::ContainerUser {
        linux: Some(v1::LinuxContainerUser {
            uid: u["uid"].as_i64().unwrap_or(0),
            gid: u["gid"].as_i64().unwrap_or(0),
            supplemental_groups: u["additionalGids"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect(),
        }),
    });
    let stop_signal = signal_of(&rec.stop_signal);
    let status = v1::ContainerStatus {
        id: rec.id.clone(),
        metadata: Some(metadata(rec)),
        state: cri_state(rec.state) as i32,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        exit_code: rec.exit_code,
        image,
        image_ref,
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: to_map(&rec.labels),
        annotations: to_map(&rec.annotations),
        mounts: config.mounts.clone(),
        log_path: rec.log_path.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
        resources: resources_of(rec, config).map(|linux| v1::ContainerResources { linux: Some(linux), windows: None }),
        image_id: rec.image_ref.clone(),
        user,
        stop_signal: stop_signal as i32,
    };
    (status, spec)
}

/// The CRI signal an image's stop signal names (RUNTIME_DEFAULT when none or not one of CRI's).
fn signal_of(name: &str) -> v1::Signal {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    v1::Signal::from_str_name(&full).unwrap_or(v1::Signal::RuntimeDefault)
}

/// containerd's verbose `info` object.
fn verbose_info(rec: &ContainerRecord, config: &v1::ContainerConfig, spec: Option<Value>) -> Value {
    json!({
        "sandboxID": rec.pod_id,
        "pid": rec.pid,
        "monitorPid": rec.monitor_pid,
        "removing": false,
        "snapshotKey": rec.id,
        "snapshotter": "overlayfs",
        "runtimeType": "roci",
        "cgroupsPath": rec.cgroups_path,
        "runtimeSpec": spec.unwrap_or(Value::Null),
        "config": config_json(config),
    })
}

/// The parts of a `ContainerConfig` kubelet and crictl users read, as JSON with the proto's
/// field names (containerd prints the whole message).
fn config_json(c: &v1::ContainerConfig) -> Value {
    json!({
        "metadata": c.metadata.as_ref().map(|m| json!({ "name": m.name, "attempt": m.attempt })),
        "image": c.image.as_ref().map(|i| json!({ "image": i.image })),
        "command": c.command,
        "args": c.args,
        "working_dir": c.working_dir,
        "envs": c.envs.iter().map(|e| json!({ "key": e.key, "value": e.value })).collect::<Vec<_>>(),
        "mounts": c.mounts.iter().map(|m| json!({
            "container_path": m.container_path,
            "host_path": m.host_path,
            "readonly": m.readonly,
            "propagation": v1::MountPropagation::try_from(m.propagation).map(|p| p.as_str_name()).unwrap_or("?"),
        })).collect::<Vec<_>>(),
        "labels": c.labels,
        "annotations": c.annotations,
        "log_path": c.log_path,
        "stdin": c.stdin,
        "stdin_once": c.stdin_once,
        "tty": c.tty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_map_to_cri_names() {
        assert_eq!(signal_of("SIGQUIT"), v1::Signal::Sigquit);
        assert_eq!(signal_of("term"), v1::Signal::Sigterm);
        assert_eq!(signal_of(""), v1::Signal::RuntimeDefault);
        assert_eq!(signal_of("15"), v1::Signal::RuntimeDefault);
    }
}
