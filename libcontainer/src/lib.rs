//! libcontainer: everything in roci that touches the kernel.
//!
//! The crate is synchronous and single-threaded by design: a container's init
//! is a clone of the calling process, so the caller must not have other
//! threads running when it creates a container (the `roci` binary never does;
//! the CRI daemon spawns `roci` as a helper process instead of forking
//! itself).
//!
//! Layout, one module per kernel concern:
//! - [`sys`]: the only place with `unsafe`: raw syscalls behind safe functions.
//! - [`spec`]: loading and validating `config.json`.
//! - [`container`]: one file per verb (create, start, kill, delete, state).
//! - [`process`]: the container's init, and the channel between it and the runtime.
//! - [`rootfs`]: mounts, devices, pivot_root, masked and read-only paths.
//! - [`cgroups`]: a manager per cgroup version.
//! - [`image_bundle`]: removing the bundle and snapshot of a container made from an image with
//!   the container. Images themselves (content store, pulls, unpacking, snapshots, image configs
//!   turned into config.json) are the `libimage` crate's, which builds on this one: the runtime
//!   links no async runtime, TLS or registry client.
//! - [`template`]: runc's default config.json.
//! - [`monitor`]: the per-container parent that roci-cri starts with `roci monitor`: holds
//!   the container's stdio, writes its CRI log and exit record, serves ExecSync.
//! - [`selfexe`]: keeping the runtime's binary out of the container's reach.
//! - [`attrs`]: scheduler, I/O priority, CPU affinity, personality and memory policy of the container's processes.
//! - [`lsm`] (AppArmor, SELinux), [`intelrdt`], [`netdev`] (`linux.netDevices`).
//! - [`namespaces`], [`caps`], [`rlimits`], [`user`], [`hooks`], [`tty`], [`state`].

#![deny(unsafe_code)]

pub mod attrs;
pub mod caps;
pub mod cgroups;
pub mod container;
pub mod criu;
pub mod error;
pub mod features;
pub mod hooks;
pub mod image_bundle;
pub mod intelrdt;
pub mod lsm;
pub mod monitor;
pub mod mountinfo;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod selfexe;
pub mod signal;
pub mod spec;
pub mod state;
pub mod sys;
pub mod template;
pub mod tty;
pub mod user;

#[cfg(test)]
mod fuzz_tests;

pub use error::{Error, Result};
