//! The generated server and client talk to each other over a Unix socket, as the kubelet and
//! roci-cri will: gRPC over HTTP/2, a unary call and a server-streaming one, a status code, and the
//! request and response fields arriving as sent.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use roci_cri_proto::runtime_v1::image_service_client::ImageServiceClient;
use roci_cri_proto::runtime_v1::image_service_server::{ImageService, ImageServiceServer};
use roci_cri_proto::runtime_v1::{
    FilesystemIdentifier, FilesystemUsage, Image, ImageFilter, ImageFsInfoRequest, ImageFsInfoResponse, ImageSpec,
    ImageStatusRequest, ImageStatusResponse, ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse,
    RemoveImageRequest, RemoveImageResponse, StreamImagesRequest, StreamImagesResponse, UInt64Value,
};
use tokio::net::{UnixListener, UnixStream};
use tonic::codegen::tokio_stream::wrappers::UnixListenerStream;
use tonic::codegen::tokio_stream::{self, Stream};
use tonic::transport::{Endpoint, Server, Uri};
use tonic::{Code, Request, Response, Status};

/// Images by name, answering the way an image service would.
struct Images(Vec<Image>);

impl Images {
    fn matching(&self, filter: Option<&ImageFilter>) -> Vec<Image> {
        let wanted = filter.and_then(|f| f.image.as_ref()).map(|spec| spec.image.as_str()).unwrap_or("");
        self.0.iter().filter(|image| wanted.is_empty() || image.repo_tags.iter().any(|t| t == wanted)).cloned().collect()
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(&self, request: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        Ok(Response::new(ListImagesResponse { images: self.matching(request.get_ref().filter.as_ref()) }))
    }

    type StreamImagesStream = std::pin::Pin<Box<dyn Stream<Item = Result<StreamImagesResponse, Status>> + Send>>;

    /// One image per message.
    async fn stream_images(&self, request: Request<StreamImagesRequest>) -> Result<Response<Self::StreamImagesStream>, Status> {
        let batches = self
            .matching(request.get_ref().filter.as_ref())
            .into_iter()
            .map(|image| Ok(StreamImagesResponse { images: vec![image] }));
        Ok(Response::new(Box::pin(tokio_stream::iter(batches.collect::<Vec<_>>()))))
    }

    async fn image_status(&self, request: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        let spec = request.into_inner().image.ok_or_else(|| Status::invalid_argument("ImageStatus: image is required"))?;
        let image = self.0.iter().find(|image| image.repo_tags.contains(&spec.image)).cloned();
        Ok(Response::new(ImageStatusResponse { image, info: Default::default() }))
    }

    async fn pull_image(&self, request: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        let name = request.into_inner().image.map(|spec| spec.image).unwrap_or_default();
        Err(Status::unavailable(format!("PullImage {name}: no registry in this test")))
    }

    async fn remove_image(&self, request: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        let name = request.into_inner().image.map(|spec| spec.image).unwrap_or_default();
        Err(Status::failed_precondition(format!("RemoveImage {name}: images are read-only in this test")))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Result<Response<ImageFsInfoResponse>, Status> {
        let usage = FilesystemUsage {
            timestamp: 1,
            fs_id: Some(FilesystemIdentifier { mountpoint: "/var/lib/roci".into() }),
            used_bytes: Some(UInt64Value { value: 4096 }),
            inodes_used: Some(UInt64Value { value: 2 }),
        };
        Ok(Response::new(ImageFsInfoResponse { image_filesystems: vec![usage], container_filesystems: vec![] }))
    }
}

fn image(id: &str, tag: &str, size: u64) -> Image {
    Image { id: id.into(), repo_tags: vec![tag.into()], size, pinned: tag.contains("pause"), ..Default::default() }
}

async fn client_for(socket: PathBuf) -> ImageServiceClient<tonic::transport::Channel> {
    // The URI is required by the endpoint but unused: every connection goes to the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to the test server's socket");
    ImageServiceClient::new(channel)
}

#[tokio::test]
async fn image_service_round_trip_over_a_unix_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("cri.sock");
    let listener = UnixListener::bind(&socket).expect("bind the test socket");
    let images =
        Images(vec![image("sha256:aa", "registry.k8s.io/pause:3.10", 321_000), image("sha256:bb", "busybox:1.36", 2_000_000)]);
    let server = tokio::spawn(
        Server::builder().add_service(ImageServiceServer::new(images)).serve_with_incoming(UnixListenerStream::new(listener)),
    );

    let mut client = client_for(socket).await;

    let all = client.list_images(ListImagesRequest { filter: None }).await.expect("ListImages").into_inner().images;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, "sha256:aa");
    assert_eq!(all[0].size, 321_000);
    assert!(all[0].pinned && !all[1].pinned);

    let filter = ImageFilter { image: Some(ImageSpec { image: "busybox:1.36".into(), ..Default::default() }) };
    let one = client
        .list_images(ListImagesRequest { filter: Some(filter) })
        .await
        .expect("ListImages with a filter")
        .into_inner()
        .images;
    assert_eq!(one.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["sha256:bb"]);

    let mut stream = client.stream_images(StreamImagesRequest { filter: None }).await.expect("StreamImages").into_inner();
    let mut streamed = Vec::new();
    while let Some(batch) = stream.message().await.expect("a StreamImages message") {
        streamed.extend(batch.images.into_iter().map(|i| i.id));
    }
    assert_eq!(streamed, ["sha256:aa", "sha256:bb"]);

    let absent =
        ImageStatusRequest { image: Some(ImageSpec { image: "nginx:1.14-2".into(), ..Default::default() }), verbose: false };
    assert_eq!(client.image_status(absent).await.expect("ImageStatus").into_inner().image, None);

    let error = client.image_status(ImageStatusRequest::default()).await.expect_err("ImageStatus without an image");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(error.message(), "ImageStatus: image is required");

    let fs = client.image_fs_info(ImageFsInfoRequest {}).await.expect("ImageFsInfo").into_inner();
    let usage = &fs.image_filesystems[0];
    assert_eq!(usage.fs_id.as_ref().map(|f| f.mountpoint.as_str()), Some("/var/lib/roci"));
    assert_eq!(usage.used_bytes, Some(UInt64Value { value: 4096 }));

    server.abort();
}
