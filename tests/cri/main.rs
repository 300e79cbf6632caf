//! The CRI suite: runtime.v1 RPCs through the project's own tonic client, against roci-cri or,
//! with `ROCI_CRI_TEST_TARGET=containerd`, against Debian containerd's CRI plugin (the reference:
//! it proves the tests and the wire contract). Every difference between the two is named at its
//! assertion. Each test starts its own daemon (see server.rs).
//!
//! - runtime.rs: Version, Status, RuntimeConfig, UpdateRuntimeConfig, malformed requests.
//! - images.rs: the ImageService (pull by tag, digest and with credentials, status, list, remove,
//!   image filesystem), images served by a private registry as the mirror of docker.io and
//!   registry.k8s.io.
//! - pods.rs: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus and
//!   ListPodSandbox on a CNI bridge, seen on the pause process; recovery after a SIGKILL.
//! - pod_fixture.rs: what pod tests share: the pause image (from `roci-pause`), a cgroup tree of
//!   the test's own for the daemon and its pods, the CNI bridge configuration.
//! - containers.rs: the container RPCs (create, start, stop, remove, list, status, resources,
//!   ExecSync, ReopenContainerLog) with busybox in pods of the pod fixture, seen from outside
//!   (namespaces, cgroups, the CRI log file) and inside; recovery after a SIGKILL.
//! - observe.rs: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats (the
//!   numbers against what the containers do), GetContainerEvents (the lifecycle as events; roci
//!   only: containerd 1.6 does not serve it), UpdatePodSandboxResources (recorded; containerd 1.6
//!   does not serve it).
//! - apparmor.rs: AppArmor profiles of pods and containers (the daemon's default, Unconfined,
//!   privileged, Localhost), seen on their processes; the refusals on a host without AppArmor.
//! - checkpoint.rs: CheckpointContainer (CRIU; roci only: containerd 1.6 does not serve it), the
//!   archive's layout, the container running on, the errors.
//! - daemon.rs: roci-cri as a daemon (socket ownership, signals, configuration file and flags);
//!   these run only in the roci leg.

mod apparmor;
mod checkpoint;
mod containers;
mod daemon;
mod images;
mod observe;
mod pod_fixture;
mod pods;
mod runtime;
mod server;
