//! cgroup v1: one file per controller, each writing that controller's files
//! in the container's directory of the hierarchy that has it.
//!
//! A v1 value of `-1` lifts a limit; the kernel takes it as written.

pub mod blkio;
pub mod cpu;
pub mod cpuacct;
pub mod cpuset;
pub mod devices;
pub mod freezer;
pub mod hugetlb;
pub mod memory;
pub mod net_cls;
pub mod net_prio;
pub mod pids;
pub mod rdma;
