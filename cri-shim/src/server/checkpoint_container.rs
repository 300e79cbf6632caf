//! CheckpointContainer: a CRIU dump of a running container that leaves it running (kubelet's
//! forensic checkpoints), written as one tar archive at `location` (see [`crate::checkpoint`] for
//! its layout, containerd 1.7+'s).
//!
//! ```text
//!  Running ─ lock ─▶ roci checkpoint --leave-running ─▶ archive (temp file, renamed) ─▶ Running
//!                     (CRIU, images in <root>/checkpoints/<id>-<n>/)     work dir removed
//!                     │ timeout: CRIU and roci killed (their process group), the container
//!                     │ thawed (roci resume) ─▶ DeadlineExceeded
//! ```
//! The dump runs through `roci checkpoint` (a short-lived child; the daemon never forks): roci's
//! checkpoint code declares what is outside the dumped tree to CRIU: the pod's network namespace
//! (pinned, joined by path), a PID namespace joined from the pause, the bind mounts (the pod's
//! hostname, hosts, resolv.conf, `/dev/shm`, the request's mounts), masked files. The init's stdio
//! are pipes to its monitor, outside the tree: CRIU dumps their ends, and `descriptors.json` in the
//! images names them for a restore. With `--leave-running` CRIU thaws the tree once dumped, so the
//! monitor goes on: logs, ExecSync, the exit record.
//!
//! Errors: an unknown id is NotFound, a container that is not running FailedPrecondition, an empty
//! or relative `location` (or one whose directory is missing) InvalidArgument; a failed dump
//! Unknown with roci's message (CRIU's log excerpt). containerd 1.7+ answers the state and
//! location errors as Unknown, and ignores `timeout`; containerd 1.6 does not serve the RPC.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};
use tonic::Status;

use super::container_status::status_of;
use super::containers::{config_of, find, lifecycle_status, settled};
use super::sandbox;
use super::Cri;
use crate::checkpoint::{self, Parts};
use crate::store::{ContainerRecord, ContainerState};

const RPC: &str = "CheckpointContainer";

/// Go's zero `time.Time` as JSON: config.dump's `restoredTime` of a checkpoint never restored.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub async fn checkpoint_container(
    cri: &Arc<Cri>,
    req: &v1::CheckpointContainerRequest,
) -> Result<v1::CheckpointContainerResponse, Status> {
    let location = check_location(&req.location)?;
    let timeout = match req.timeout {
        t if t < 0 => return Err(Status::invalid_argument(format!("{RPC}: timeout: {t} is negative"))),
        0 => None,
        t => Some(Duration::from_secs(t as u64)),
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let rec = find(cri, RPC, &req.container_id)?;
    // A stop or removal waits for the dump (CRIU on a tree that is being killed would fail).
    let _lock = cri.store.lock(&rec.id).await;
    let rec = settled(cri, RPC, &rec.id).await?;
    if rec.state != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "{RPC}: container {} is {:?}: only running containers can be checkpointed",
            rec.id, rec.state
        )));
    }

    let work = work_dir(cri, &rec.id);
    let result = dump_and_archive(cri, &rec, &work, &location, deadline, timeout).await;
    if let Err(e) = sandbox::remove_dir(&work) {
        tracing::warn!(id = rec.id, error = %e, "remove the checkpoint work directory");
    }
    result?;
    tracing::info!(id = rec.id, location = %location.display(), "wrote a checkpoint archive");
    Ok(v1::CheckpointContainerResponse {})
}

/// `location` must name a file (absolute) in an existing directory.
fn check_location(location: &str) -> Result<PathBuf, Status> {
    let bad = |why: &str| Err(Status::invalid_argument(format!("{RPC}: location {location:?}: {why}")));
    if location.is_empty() {
        return bad("empty");
    }
    let path = PathBuf::from(location);
    if !path.is_absolute() {
        return bad("not an absolute path");
    }
    if path.file_name().is_none() || path.is_dir() {
        return bad("names a directory, not the archive file");
    }
    if !path.parent().is_some_and(Path::is_dir) {
        return bad("its directory does not exist");
    }
    Ok(path)
}

/// `<root>/checkpoints/<id>-<now ns>`: CRIU's images and work files while one checkpoint runs.
fn work_dir(cri: &Cri, id: &str) -> PathBuf {
    checkpoint::work_root(&cri.config.root).join(format!("{id}-{}", sandbox::now_nanos()))
}

async fn dump_and_archive(
    cri: &Arc<Cri>,
    rec: &ContainerRecord,
    work: &Path,
    location: &Path,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> Result<(), Status> {
    let images = work.join(checkpoint::CHECKPOINT_DIR);
    let criu_work = work.join("work");
    for dir in [&images, &criu_work] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Status::internal(format!("{RPC}: create {}: {e}", dir.display())))?;
    }
    let parts = parts(cri, rec, images, criu_work).await?;

    let args: Vec<std::ffi::OsString> = vec![
        "--root".into(),
        cri.layout.roci_root().into(),
        "checkpoint".into(),
        "--leave-running".into(),
        "--image-path".into(),
        parts.images.clone().into(),
        "--work-path".into(),
        parts.work.clone().into(),
        rec.id.clone().into(),
    ];
    let mut cmd = tokio::process::Command::new(&cri.runtime);
    cmd.args(&args);
    match run_until(cmd, deadline).await {
        Ran::Done(Ok(out)) if out.status.success() => {}
        Ran::Done(Ok(out)) => {
            let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            tracing::error!(id = rec.id, error = %message, "checkpoint");
            return Err(Status::unknown(format!("{RPC}: checkpoint container {} ({}): {message}", rec.id, out.status)));
        }
        Ran::Done(Err(e)) => {
            return Err(Status::internal(format!("{RPC}: run {}: {e}", cri.runtime.display())));
        }
        Ran::Expired => {
            // A CRIU killed inside its dump may leave the container's cgroup frozen.
            if let Err(e) = sandbox::roci(cri, &["resume", &rec.id]).await {
                if !e.contains("not paused") {
                    tracing::error!(id = rec.id, error = %e, "thaw the container after a checkpoint timed out");
                }
            }
            return Err(expired(timeout));
        }
    }
    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
        return Err(expired(timeout));
    }
    let scratch = work.to_owned();
    let location = location.to_owned();
    tokio::task::spawn_blocking(move || checkpoint::write_archive(&parts, &scratch, &location))
        .await
        .map_err(|e| Status::internal(format!("{RPC}: the archive task failed: {e}")))?
        .map_err(|e| Status::internal(format!("{RPC}: {e}")))
}

fn expired(timeout: Option<Duration>) -> Status {
    let secs = timeout.map_or(0, |t| t.as_secs());
    Status::deadline_exceeded(format!("{RPC}: timeout {secs}s exceeded: the CRIU dump was stopped"))
}

/// The archive's parts besides CRIU's images: the metadata files (containerd's), the snapshot's
/// upper directory, the bind mount destinations left out of the rootfs diff, the log file.
async fn parts(cri: &Arc<Cri>, rec: &ContainerRecord, images: PathBuf, work: PathBuf) -> Result<Parts, Status> {
    let config = config_of(rec)?;
    let pod = cri.store.pod(&rec.pod_id).map_err(|e| lifecycle_status(RPC, e.into()))?;
    let root = cri.images.image_root();
    let bundle = root.bundle_path(&rec.id);
    let spec_path = bundle.join("config.json");
    let spec_dump =
        std::fs::read(&spec_path).map_err(|e| Status::internal(format!("{RPC}: read {}: {e}", spec_path.display())))?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&spec_dump).map_err(|e| Status::internal(format!("{RPC}: parse {}: {e}", spec_path.display())))?;
    let skip = libcontainer::criu::bind_mounts(&spec, &bundle).into_iter().map(|(dest, _)| dest).collect();
    let (status, _) = status_of(cri, rec, &config).await;
    let image = status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
    let config_dump = json!({
        "id": rec.id,
        "name": rec.metadata.reserved_name(&pod.metadata),
        "rootfsImage": image,
        "rootfsImageRef": status.image_ref,
        "rootfsImageName": image,
        "runtime": "roci",
        "createdTime": go_time(rec.created_at),
        "checkpointedTime": go_time(sandbox::now_nanos()),
        "restoredTime": GO_ZERO_TIME,
        "restored": false,
    });
    Ok(Parts {
        images,
        work,
        upper: root.snapshots.path(&rec.id).join("upper"),
        skip,
        config_dump: serde_json::to_vec_pretty(&config_dump).expect("JSON values serialise"),
        spec_dump,
        status_dump: serde_json::to_vec(&status_json(&status)).expect("JSON values serialise"),
        container_log: rec.log_path.clone().filter(|p| p.is_file()),
    })
}

/// Nanoseconds since the epoch as Go marshals a `time.Time` (RFC 3339, nanoseconds when any).
fn go_time(ns: i64) -> String {
    if ns == 0 {
        return GO_ZERO_TIME.to_owned();
    }
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A CRI `ContainerStatus` as Go's `encoding/json` writes the generated type (containerd's
/// status.dump): proto field names, empty fields left out, enums as numbers.
fn status_json(s: &v1::ContainerStatus) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |key: &str, v: Value| {
        let empty = match &v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Number(n) => n.as_i64() == Some(0),
            Value::Bool(b) => !b,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        };
        if !empty {
            out.insert(key.to_owned(), v);
        }
    };
    put("id", json!(s.id));
    put("metadata", s.metadata.as_ref().map_or(Value::Null, |m| json!({ "name": m.name, "attempt": m.attempt })));
    put("state", json!(s.state));
    put("created_at", json!(s.created_at));
    put("started_at", json!(s.started_at));
    put("finished_at", json!(s.finished_at));
    put("exit_code", json!(s.exit_code));
    put(
        "image",
        s.image.as_ref().map_or(Value::Null, |i| {
            let mut o = serde_json::Map::new();
            o.insert("image".into(), json!(i.image));
            if !i.user_specified_image.is_empty() {
                o.insert("user_specified_image".into(), json!(i.user_specified_image));
            }
            Value::Object(o)
        }),
    );
    put("image_ref", json!(s.image_ref));
    put("reason", json!(s.reason));
    put("message", json!(s.message));
    put("labels", json!(s.labels));
    put("annotations", json!(s.annotations));
    put(
        "mounts",
        Value::Array(
            s.mounts
                .iter()
                .map(|m| {
                    json!({
                        "container_path": m.container_path,
                        "host_path": m.host_path,
                        "readonly": m.readonly,
                        "propagation": m.propagation,
                    })
                })
                .collect(),
        ),
    );
    put("log_path", json!(s.log_path));
    put("image_id", json!(s.image_id));
    Value::Object(out)
}

/// How a command run with a deadline ended.
#[derive(Debug)]
enum Ran {
    Done(std::io::Result<std::process::Output>),
    /// The deadline passed: the command's whole process group was killed and reaped.
    Expired,
}

/// Run `cmd` (stdin null, stdout and stderr captured) in a process group of its own; when
/// `deadline` passes first, SIGKILL the group (roci and the CRIU it started) and wait for the
/// command to end.
async fn run_until(mut cmd: tokio::process::Command, deadline: Option<tokio::time::Instant>) -> Ran {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ran::Done(Err(e)),
    };
    let group = child.id().and_then(|p| i32::try_from(p).ok());
    let output = child.wait_with_output();
    tokio::pin!(output);
    let Some(deadline) = deadline else { return Ran::Done(output.await) };
    tokio::select! {
        out = &mut output => Ran::Done(out),
        () = tokio::time::sleep_until(deadline) => {
            if let Some(group) = group {
                // The group is the command's own (process_group(0) above): only what it started.
                if let Err(e) = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL) {
                    tracing::warn!(group, error = %e, "kill the process group of a command past its deadline");
                }
            }
            // Every member is dead: the pipes close and the command is reaped.
            let _ = output.await;
            Ran::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_must_be_absolute_files_in_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let code = |l: &str| check_location(l).map(drop).map_err(|e| (e.code(), e.message().to_owned()));
        assert_eq!(code(&dir.path().join("a.tar").to_string_lossy()), Ok(()));
        for bad in ["", "a.tar", "./x/a.tar", "/", &dir.path().to_string_lossy(), &dir.path().join("no/a.tar").to_string_lossy()]
        {
            let (c, m) = code(bad).expect_err(bad);
            assert_eq!(c, tonic::Code::InvalidArgument, "{bad}: {m}");
            assert!(m.contains("location"), "{m}");
        }
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time(0), GO_ZERO_TIME);
        assert_eq!(go_time(1_700_000_000_123_000_000), "2023-11-14T22:13:20.123Z");
        assert_eq!(go_time(1_700_000_000_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn status_json_uses_proto_names_and_drops_empty_fields() {
        let s = v1::ContainerStatus {
            id: "c1".into(),
            metadata: Some(v1::ContainerMetadata { name: "n".into(), attempt: 0 }),
            state: v1::ContainerState::ContainerRunning as i32,
            created_at: 5,
            image: Some(v1::ImageSpec { image: "busybox:1.36".into(), ..Default::default() }),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            status_json(&s),
            json!({
                "id": "c1",
                "metadata": {"name": "n", "attempt": 0},
                "state": 1,
                "created_at": 5,
                "image": {"image": "busybox:1.36"},
                "labels": {"a": "b"},
            })
        );
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(format!("sleep 30 & echo $! > {}; wait", pid_file.display()));
        let start = tokio::time::Instant::now();
        let ran = run_until(cmd, Some(start + Duration::from_millis(300))).await;
        assert!(matches!(ran, Ran::Expired), "{ran:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "waited {:?}", start.elapsed());
        let child: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // The grandchild (as CRIU under roci) died with the group; a zombie awaiting init is dead.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()));
            if state.is_none_or(|c| c == 'Z' || c == 'X') {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the grandchild {child} still runs: {state:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mut ok = tokio::process::Command::new("sh");
        ok.arg("-c").arg("echo out; echo err >&2");
        match run_until(ok, Some(tokio::time::Instant::now() + Duration::from_secs(10))).await {
            Ran::Done(Ok(out)) => {
                assert!(out.status.success());
                assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
            }
            other => panic!("{other:?}"),
        }
    }
}
