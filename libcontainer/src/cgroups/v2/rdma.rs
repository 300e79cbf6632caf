//! v2 `rdma`: `rdma.max`, the same file and lines as v1 (`v1::rdma`).

pub use crate::cgroups::v1::rdma::apply;
