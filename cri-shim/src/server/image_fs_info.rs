//! ImageFsInfo: the image root's disk use (bytes allocated and inodes, blobs, unpacked layers and
//! records alike), measured at most 5 s before the call (`timestamp` says when). containerd 1.6 reports its snapshotter's directory and
//! no `container_filesystems`; roci-cri reports its image root (`<root>/images`), likewise alone.

use std::time::UNIX_EPOCH;

use roci_cri_proto::runtime_v1::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value};
use tonic::Status;

use super::{image_status, Cri};

pub(super) async fn image_fs_info(cri: &Cri, _: &ImageFsInfoRequest) -> Result<ImageFsInfoResponse, Status> {
    let usage = cri.images.fs_usage().await.map_err(|e| image_status("ImageFsInfo", e))?;
    let timestamp = usage.measured.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    Ok(ImageFsInfoResponse {
        image_filesystems: vec![FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier { mountpoint: usage.mountpoint.to_string_lossy().into_owned() }),
            used_bytes: Some(UInt64Value { value: usage.used_bytes }),
            inodes_used: Some(UInt64Value { value: usage.inodes_used }),
        }],
        container_filesystems: Vec::new(),
    })
}
