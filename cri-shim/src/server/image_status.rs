//! ImageStatus: the image a reference or ID names, or no image (not an error) when there is none;
//! with `verbose`, `info["info"]` holds `{"chainID": …, "imageSpec": <the image configuration>}`
//! as containerd's CRI writes it.

use std::collections::HashMap;

use roci_cri_proto::runtime_v1::{Image, ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value};
use tonic::Status;

use super::{image_status as status_of, Cri};
use crate::images::CriImage;

pub(super) async fn image_status(cri: &Cri, request: &ImageStatusRequest) -> Result<ImageStatusResponse, Status> {
    let what = request.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default();
    let Some(image) = cri.images.status(what).await.map_err(|e| status_of("ImageStatus", e))? else {
        return Ok(ImageStatusResponse::default());
    };
    let mut info = HashMap::new();
    if request.verbose {
        let verbose = serde_json::json!({ "chainID": image.chain_id, "imageSpec": image.config });
        info.insert("info".to_string(), verbose.to_string());
    }
    Ok(ImageStatusResponse { image: Some(to_cri(image)), info })
}

/// The wire form of an image, for ImageStatus and ListImages. The configuration's `User` gives
/// `uid` when it is numeric (`1000`, `1000:1000`), else `username` (the part before a `:`).
pub(super) fn to_cri(image: CriImage) -> Image {
    let user = image.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(Int64Value { value: uid }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    Image {
        spec: Some(ImageSpec { image: image.id.clone(), ..ImageSpec::default() }),
        id: image.id,
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size: image.size,
        uid,
        username,
        pinned: image.pinned,
    }
}
