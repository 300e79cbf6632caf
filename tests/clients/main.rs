//! The client suites: containerd (`ctr` with the runc v2 shim), Docker and Podman, each started by the
//! test with its own state in a temporary directory, running containers with the runtime under test in
//! runc's place (`ROCI_TEST_RUNTIME`, as for the OCI suite). Each group also runs against runc, with the
//! same assertions. Images come from [`roci_integration::image`] (busybox, built locally, no network).
//!
//! Run one group: `cargo test -p roci-integration --test clients containerd_` (or `docker_`, `podman_`).

mod containerd;
mod docker;
mod podman;

/// A value of a `/proc/<pid>/status` text (`CapEff`, `Seccomp`...), as the containers print it.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in {status:?}"))
}
