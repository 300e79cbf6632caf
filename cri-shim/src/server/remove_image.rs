//! RemoveImage: the image a reference or ID names goes with every reference to it (as containerd
//! 1.6 removes all of an image's references); an unknown image is no error. Containers made from it
//! keep running: their snapshots keep the layers they stack.

use roci_cri_proto::runtime_v1::{RemoveImageRequest, RemoveImageResponse};
use tonic::Status;

use super::{image_status, Cri};

pub(super) async fn remove_image(cri: &Cri, request: &RemoveImageRequest) -> Result<RemoveImageResponse, Status> {
    let what = request.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default();
    cri.images.remove(what).await.map_err(|e| image_status("RemoveImage", e))?;
    Ok(RemoveImageResponse {})
}
