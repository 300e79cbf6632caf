//! What roci-cri keeps on disk of each pod and container: one versioned JSON record each,
//! written atomically. The CRI request's own config travels as the protobuf bytes it was sent in
//! (`config`), decoded only by `server/`: the store holds no wire types, and nothing the request
//! said is lost when the daemon restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::lifecycle::{ContainerState, PodState};

/// The version of the record format this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// A pod's identity as kubelet gives it (`PodSandboxMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMetadata {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

impl PodMetadata {
    /// The name reserved for the pod while its record exists: `name_namespace_uid_attempt`, the
    /// key containerd reserves, so that a second RunPodSandbox of the same attempt is refused.
    pub fn reserved_name(&self) -> String {
        format!("{}_{}_{}_{}", self.name, self.namespace, self.uid, self.attempt)
    }
}

/// A container's identity within its pod (`ContainerMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMetadata {
    pub name: String,
    pub attempt: u32,
}

impl ContainerMetadata {
    /// The name reserved for the container: `name_podname_podnamespace_poduid_attempt`.
    pub fn reserved_name(&self, pod: &PodMetadata) -> String {
        format!("{}_{}_{}_{}_{}", self.name, pod.name, pod.namespace, pod.uid, self.attempt)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub version: u32,
    /// 64 lowercase hex digits; also the pause container's OCI id.
    pub id: String,
    pub metadata: PodMetadata,
    pub state: PodState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub runtime_handler: String,
    /// The pinned network namespace; `None` for a pod on the host's network.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The pod's IPs from CNI, the primary first.
    #[serde(default)]
    pub ips: Vec<String>,
    /// The pause container's init (its monitor's child); 0 before it was created. Its
    /// `/proc/<pid>/ns/*` are the pod's namespaces, valid while the monitor says it runs.
    #[serde(default)]
    pub pid: i32,
    /// The OCI `linux.cgroupsPath` of the pause container: the pod's cgroup.
    #[serde(default)]
    pub cgroups_path: String,
    /// The pause image as configured when the pod was made (its reference).
    #[serde(default)]
    pub image: String,
    /// The `PodSandboxConfig` as sent (protobuf).
    #[serde(default, with = "bytes_base64")]
    pub config: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub version: u32,
    /// 64 lowercase hex digits; also the OCI container id.
    pub id: String,
    pub pod_id: String,
    pub metadata: ContainerMetadata,
    pub state: ContainerState,
    /// Nanoseconds since the epoch; 0 while it has not happened.
    pub created_at: i64,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    #[serde(default)]
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ... once exited.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// The container's init (its monitor's child); 0 before it was created.
    #[serde(default)]
    pub pid: i32,
    /// The container's monitor (the init's parent); 0 before it was created. Checked against
    /// `/proc/<pid>/cmdline` (it names the monitor's config) before it is trusted after a restart.
    #[serde(default)]
    pub monitor_pid: i32,
    /// The image's `StopSignal` when the container was created (as the image wrote it:
    /// `SIGTERM`, `15`, `RTMIN+3`); empty: SIGTERM.
    #[serde(default)]
    pub stop_signal: String,
    /// The OCI `linux.cgroupsPath` the container was created with.
    #[serde(default)]
    pub cgroups_path: String,
    /// The image as the request named it, and the image ID it resolved to.
    pub image: String,
    pub image_ref: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The CRI log file (the pod's log directory joined with the container's log path); `None`
    /// when kubelet asked for no log.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The `ContainerConfig` as sent (protobuf).
    #[serde(default, with = "bytes_base64")]
    pub config: Vec<u8>,
    /// The `LinuxContainerResources` of the last UpdateContainerResources as sent (protobuf);
    /// `None`: the config's.
    #[serde(default, with = "bytes_base64_opt", skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<u8>>,
}

/// Optional bytes as one base64 string.
mod bytes_base64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::bytes_base64::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(t.as_bytes()).map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// Bytes as one base64 string rather than a JSON array of numbers.
mod bytes_base64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_containerds() {
        let pod = PodMetadata { name: "web".into(), uid: "u1".into(), namespace: "default".into(), attempt: 2 };
        assert_eq!(pod.reserved_name(), "web_default_u1_2");
        let c = ContainerMetadata { name: "nginx".into(), attempt: 0 };
        assert_eq!(c.reserved_name(&pod), "nginx_web_default_u1_0");
    }

    #[test]
    fn config_bytes_round_trip_as_base64() {
        let record = PodRecord {
            version: RECORD_VERSION,
            id: "a".repeat(64),
            metadata: PodMetadata { name: "p".into(), uid: "u".into(), namespace: "n".into(), attempt: 0 },
            state: PodState::Ready,
            created_at: 1,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            runtime_handler: String::new(),
            netns: None,
            ips: vec![],
            pid: 0,
            cgroups_path: String::new(),
            image: String::new(),
            config: vec![0, 1, 2, 255],
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""config":"AAEC/w==""#), "{json}");
        assert_eq!(serde_json::from_str::<PodRecord>(&json).unwrap(), record);
    }
}
