//! cgroup v2
