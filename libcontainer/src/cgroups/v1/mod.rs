//! cgroup v1
