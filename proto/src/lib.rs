//! The CRI `runtime.v1` wire contract: the kubelet's RuntimeService and ImageService as prost
//! messages with tonic servers and clients, generated at build time from `runtime/v1/api.proto`.
//!
//! Protobuf stays at this edge: `roci-cri` converts these types to its own at the RPC handlers,
//! and nothing else in the workspace depends on this crate.

/// Package `runtime.v1`: every message and enum, plus `runtime_service_server`,
/// `runtime_service_client`, `image_service_server` and `image_service_client`.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod runtime_v1 {
    tonic::include_proto!("runtime.v1");
}

/// The compiled descriptors of `runtime/v1/api.proto` (an encoded `FileDescriptorSet`), for
/// reflection and for the contract test against upstream.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runtime.v1.descriptors.bin"));
