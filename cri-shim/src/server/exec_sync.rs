//! ExecSync (probes): the command runs through the container's monitor, which joins the
//! container's namespaces and cgroup itself (no process started here). A `timeout` (seconds, 0:
//! none) that passes kills the command; the answer is then containerd 1.6's: DeadlineExceeded,
//! "timeout 1s exceeded: context deadline exceeded".

use std::sync::Arc;
use std::time::Duration;

use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::containers::{find, lifecycle_status};
use super::Cri;
use crate::monitor::{Client, MonitorError};
use crate::store::ContainerState;

const RPC: &str = "ExecSync";

/// How long past the command's timeout the monitor's answer is waited for.
const SLACK: Duration = Duration::from_secs(10);

pub async fn exec_sync(cri: &Arc<Cri>, req: &v1::ExecSyncRequest) -> Result<v1::ExecSyncResponse, Status> {
    if req.cmd.is_empty() {
        return Err(Status::invalid_argument(format!("{RPC}: cmd: empty")));
    }
    let rec = find(cri, RPC, &req.container_id)?;
    let rec = cri.containers.current(rec).await;
    if rec.state != ContainerState::Running {
        // containerd 1.6: "container is in CONTAINER_EXITED state" (Unknown there).
        return Err(Status::failed_precondition(format!("{RPC}: container {} is not running", rec.id)));
    }
    let timeout = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
    let client = Client::new(cri.layout.container_monitor(&rec.id).socket);
    let call = client.exec_sync(&req.cmd, &[], timeout);
    let out = if timeout.is_zero() {
        call.await
    } else {
        match tokio::time::timeout(timeout + SLACK, call).await {
            Ok(r) => r,
            Err(_) => Err(MonitorError::Timeout(format!("no answer from the monitor {:?} after the timeout", timeout + SLACK))),
        }
    };
    match out {
        Ok(o) => Ok(v1::ExecSyncResponse { stdout: o.stdout, stderr: o.stderr, exit_code: o.exit_code }),
        Err(MonitorError::Timeout(_)) => {
            Err(Status::deadline_exceeded(format!("timeout {}s exceeded: context deadline exceeded", timeout.as_secs())))
        }
        Err(e) => Err(lifecycle_status(RPC, e.into())),
    }
}
