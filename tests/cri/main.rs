//! The CRI suite: runtime.v1 RPCs through the project's own tonic client, against roci-cri or,
//! with `ROCI_CRI_TEST_TARGET=containerd`, against Debian containerd's CRI plugin (the reference:
//! it proves the tests and the wire contract). Every difference between the two is named at its
//! assertion. Each test starts its own daemon (see server.rs).
//!
//! - runtime.rs: Version, Status, RuntimeConfig, UpdateRuntimeConfig, malformed requests.
//! - images.rs: the ImageService (pull by tag, digest and with credentials, status, list, remove,
//!   image filesystem), images served by a private registry as the mirror of docker.io and
//!   registry.k8s.io.
//! - daemon.rs: roci-cri as a daemon (socket ownership, signals, configuration file and flags);
//!   these run only in the roci leg.

mod daemon;
mod images;
mod runtime;
mod server;
