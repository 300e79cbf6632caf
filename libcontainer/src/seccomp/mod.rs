//! seccomp: the OCI profile compiled to a BPF filter.
