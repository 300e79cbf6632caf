//! ListImages: one entry per image ID with all its references; `filter.image.image` (a reference
//! or ID, resolved as ImageStatus resolves it) keeps only the image it names. containerd 1.6
//! ignores the filter and lists every image.

use roci_cri_proto::runtime_v1::{ListImagesRequest, ListImagesResponse};
use tonic::Status;

use super::image_status::to_cri;
use super::{image_status, Cri};

pub(super) async fn list_images(cri: &Cri, request: &ListImagesRequest) -> Result<ListImagesResponse, Status> {
    let filter = request.filter.as_ref().and_then(|f| f.image.as_ref()).map(|i| i.image.as_str()).filter(|i| !i.is_empty());
    let images = match filter {
        Some(what) => cri.images.status(what).await.map_err(|e| image_status("ListImages", e))?.into_iter().collect(),
        None => cri.images.list().await.map_err(|e| image_status("ListImages", e))?,
    };
    Ok(ListImagesResponse { images: images.into_iter().map(to_cri).collect() })
}
