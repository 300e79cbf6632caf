//! Where roci-cri keeps what each pod and container has on the host, besides the records
//! ([`crate::store`], under `root`) and the images (`<root>/images`, with each container's
//! bundle and snapshot in libimage's `bundles/<id>` and `snapshots/<id>`).
//!
//! Under `state` (lost on reboot, with the processes and mounts it is about):
//! ```text
//! roci/                       libcontainer's state root for every pod's and container's
//!                             OCI container (`roci --root`)
//! pods/<id>/                  one pod
//!     shm/                    its /dev/shm: a tmpfs mounted here (none with host IPC)
//!     hostname hosts resolv.conf   the files bound into its containers
//!     monitor.{json,sock,log} exit.json   the pause container's monitor (see below)
//! containers/<id>/            one container
//!     monitor.{json,sock,log} exit.json   its monitor
//! netns/<pod id>  cni/        pinned network namespaces and CNI results (crate::network)
//! ```
//! A monitor's files: `monitor.json` its config, `monitor.sock` its control socket, `monitor.log`
//! its own messages (JSON lines), `exit.json` the exit record it leaves.

use std::path::{Path, PathBuf};

/// The paths of one daemon (see the module docs).
#[derive(Debug, Clone)]
pub struct Layout {
    state: PathBuf,
}

/// The files of one monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorFiles {
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub exit: PathBuf,
}

impl MonitorFiles {
    fn in_dir(dir: &Path) -> MonitorFiles {
        MonitorFiles {
            config: dir.join("monitor.json"),
            socket: dir.join("monitor.sock"),
            log: dir.join("monitor.log"),
            exit: dir.join("exit.json"),
        }
    }
}

impl Layout {
    pub fn new(state: &Path) -> Layout {
        Layout { state: state.to_owned() }
    }

    /// libcontainer's state root for the OCI containers (pause and workload alike).
    pub fn roci_root(&self) -> PathBuf {
        self.state.join("roci")
    }

    pub fn pod_dir(&self, pod_id: &str) -> PathBuf {
        self.state.join("pods").join(pod_id)
    }

    /// Where the pod's `/dev/shm` tmpfs is mounted.
    pub fn pod_shm(&self, pod_id: &str) -> PathBuf {
        self.pod_dir(pod_id).join("shm")
    }

    pub fn pod_hostname(&self, pod_id: &str) -> PathBuf {
        self.pod_dir(pod_id).join("hostname")
    }

    pub fn pod_hosts(&self, pod_id: &str) -> PathBuf {
        self.pod_dir(pod_id).join("hosts")
    }

    pub fn pod_resolv_conf(&self, pod_id: &str) -> PathBuf {
        self.pod_dir(pod_id).join("resolv.conf")
    }

    /// The pause container's monitor.
    pub fn pod_monitor(&self, pod_id: &str) -> MonitorFiles {
        MonitorFiles::in_dir(&self.pod_dir(pod_id))
    }

    pub fn container_dir(&self, container_id: &str) -> PathBuf {
        self.state.join("containers").join(container_id)
    }

    pub fn container_monitor(&self, container_id: &str) -> MonitorFiles {
        MonitorFiles::in_dir(&self.container_dir(container_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_state_dir() {
        let l = Layout::new(Path::new("/run/roci/cri"));
        assert_eq!(l.roci_root(), Path::new("/run/roci/cri/roci"));
        assert_eq!(l.pod_shm("p"), Path::new("/run/roci/cri/pods/p/shm"));
        assert_eq!(l.pod_monitor("p").exit, Path::new("/run/roci/cri/pods/p/exit.json"));
        assert_eq!(l.container_monitor("c").socket, Path::new("/run/roci/cri/containers/c/monitor.sock"));
    }
}
