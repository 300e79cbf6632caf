//! The CRI services: the only place where protobuf types meet roci-cri's own.
//!
//! One file per implemented RPC; the trait impls below only dispatch. The RPCs that later work
//! fills in (containers, stats, events, streaming, StreamImages) answer `Unimplemented` with the
//! RPC's name, the one temporary answer allowed: kubelet and crictl report it as such.
//!
//! Pods: `run_pod_sandbox.rs`, `stop_pod_sandbox.rs`, `remove_pod_sandbox.rs`,
//! `pod_sandbox_status.rs`, `list_pod_sandbox.rs` over [`sandbox`] (a pod's runtime pieces, which
//! the container RPCs use too); [`recover`] runs before the daemon serves.
//!
//! [`spec`] turns RunPodSandbox's and CreateContainer's configs into OCI runtime specs, as
//! containerd 1.6 does; its errors name the request field and convert into a gRPC status.

mod checkpoint_container;
mod container_stats;
mod container_status;
mod containers;
mod create_container;
mod exec_sync;
mod filter;
mod get_container_events;
mod image_fs_info;
mod image_status;
mod list_containers;
mod list_images;
mod list_metric_descriptors;
mod list_pod_sandbox;
mod list_pod_sandbox_metrics;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod pull_image;
mod recover;
mod remove_container;
mod remove_image;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
pub mod sandbox;
pub mod spec;
mod start_container;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod streams;
mod update_container_resources;
mod update_pod_sandbox_resources;
mod update_runtime_config;
mod version;
mod wanted;

pub use recover::{recover, Recovered};

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use roci_cri_proto::runtime_v1 as v1;
use roci_cri_proto::runtime_v1::image_service_server::{ImageService, ImageServiceServer};
use roci_cri_proto::runtime_v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::containers::Containers;
use crate::events::Events;
use crate::images::{self, ImageError};
use crate::layout::Layout;
use crate::network::PodNetworks;
use crate::stats::Sampler;
use crate::store::{Store, StoreError};
use spec::HostFacts;

/// The state the handlers share.
pub struct Cri {
    config: Arc<Config>,
    /// The pod CIDR(s) kubelet gave with UpdateRuntimeConfig (comma-separated, as sent); empty until then.
    pod_cidr: RwLock<String>,
    images: Arc<images::Images>,
    /// Pods and containers: the records on disk and their lifecycles.
    store: Arc<Store>,
    networks: PodNetworks,
    /// Detected once, at start.
    host: HostFacts,
    layout: Layout,
    /// The `roci` binary (`Config::runtime`), resolved once.
    runtime: PathBuf,
    /// Lifecycle events for GetContainerEvents.
    events: Events,
    /// The previous CPU sample of each pod and container, for `usage_nano_cores`.
    sampler: Arc<Sampler>,
    /// Containers' lifecycle: monitors watched, exits recorded, stop, removal, recovery.
    containers: Arc<Containers>,
}

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Cri {
    /// Open the image root and the store under the configured root, read the registries
    /// configuration and detect the host's facts; `apparmor_default` is the AppArmor profile
    /// RuntimeDefault means (see [`crate::apparmor::ensure_default`]).
    pub fn new(config: Arc<Config>, apparmor_default: Option<String>) -> Result<Arc<Cri>, CriError> {
        let images = images::Images::open(&config.root, &config.registries_config, &config.pause_image)?;
        let store = Store::open(&config.root)?;
        let runtime = config.runtime();
        let store = Arc::new(store);
        let layout = Layout::new(&config.state);
        let events = Events::default();
        let sampler = Arc::new(Sampler::new());
        let containers = Arc::new(Containers::new(
            store.clone(),
            layout.clone(),
            runtime.clone(),
            images.image_root().clone(),
            events.clone(),
            sampler.clone(),
        ));
        Ok(Arc::new(Cri {
            pod_cidr: RwLock::new(String::new()),
            images: Arc::new(images),
            store,
            containers,
            networks: PodNetworks::new(&config),
            host: HostFacts {
                oom_score_adj_floor: config.restrict_oom_score_adj.then(own_oom_score_adj).flatten(),
                apparmor_default_profile: apparmor_default,
                ..HostFacts::detect()
            },
            layout,
            runtime,
            events,
            sampler,
            config,
        }))
    }
}

impl Cri {
    /// Before serving, after the pods: find every container again (see
    /// [`Containers::recover`]); how many could not be recovered.
    pub async fn recover_containers(&self) -> usize {
        self.containers.recover().await
    }
}

/// The daemon's own oom_score_adj (the floor of `restrict_oom_score_adj`).
fn own_oom_score_adj() -> Option<i32> {
    std::fs::read_to_string("/proc/self/oom_score_adj").ok().and_then(|s| s.trim().parse().ok())
}

/// Both services, for one tonic router.
pub fn services(cri: Arc<Cri>) -> (RuntimeServiceServer<Runtime>, ImageServiceServer<Images>) {
    (RuntimeServiceServer::new(Runtime(cri.clone())), ImageServiceServer::new(Images(cri)))
}

pub struct Runtime(Arc<Cri>);
pub struct Images(Arc<Cri>);

/// The gRPC status of an image error: a bad reference is the caller's (InvalidArgument), the rest
/// Unknown, as containerd's CRI answers them (a pull of an image the registry lacks included).
fn image_status(rpc: &str, e: ImageError) -> Status {
    let message = format!("{rpc}: {e}");
    match e {
        ImageError::BadReference { .. } | ImageError::Ambiguous { .. } => Status::invalid_argument(message),
        _ => {
            tracing::error!(rpc, error = %e, "failed");
            Status::unknown(message)
        }
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented in this build of roci-cri"))
}

type Reply<'a, T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send + 'a>>;
type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Trait methods (in the shape `#[async_trait]` gives them) that answer Unimplemented.
macro_rules! unimplemented_rpcs {
    ($($method:ident($req:ident) -> $resp:ty = $rpc:literal;)*) => {$(
        fn $method<'life0, 'async_trait>(&'life0 self, _: Request<v1::$req>) -> Reply<'async_trait, $resp>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(std::future::ready(Err(unimplemented($rpc))))
        }
    )*};
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(&self, request: Request<v1::VersionRequest>) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(version::version(request.get_ref())))
    }

    async fn status(&self, request: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        Ok(Response::new(status::status(&self.0, request.get_ref())?))
    }

    async fn runtime_config(
        &self,
        request: Request<v1::RuntimeConfigRequest>,
    ) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        Ok(Response::new(runtime_config::runtime_config(&self.0, request.get_ref())))
    }

    async fn update_runtime_config(
        &self,
        request: Request<v1::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        Ok(Response::new(update_runtime_config::update_runtime_config(&self.0, request.get_ref())?))
    }

    async fn container_stats(
        &self,
        request: Request<v1::ContainerStatsRequest>,
    ) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        Ok(Response::new(container_stats::container_stats(&self.0, request.get_ref()).await?))
    }

    async fn list_container_stats(
        &self,
        request: Request<v1::ListContainerStatsRequest>,
    ) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        Ok(Response::new(container_stats::list_container_stats(&self.0, request.get_ref()).await?))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<v1::PodSandboxStatsRequest>,
    ) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        Ok(Response::new(pod_sandbox_stats::pod_sandbox_stats(&self.0, request.get_ref()).await?))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<v1::ListPodSandboxStatsRequest>,
    ) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        Ok(Response::new(pod_sandbox_stats::list_pod_sandbox_stats(&self.0, request.get_ref()).await?))
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<v1::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<v1::UpdatePodSandboxResourcesResponse>, Status> {
        Ok(Response::new(update_pod_sandbox_resources::update_pod_sandbox_resources(&self.0, request.get_ref()).await?))
    }

    async fn create_container(
        &self,
        request: Request<v1::CreateContainerRequest>,
    ) -> Result<Response<v1::CreateContainerResponse>, Status> {
        Ok(Response::new(create_container::create_container(&self.0, request.into_inner()).await?))
    }

    async fn start_container(
        &self,
        request: Request<v1::StartContainerRequest>,
    ) -> Result<Response<v1::StartContainerResponse>, Status> {
        Ok(Response::new(start_container::start_container(&self.0, request.get_ref()).await?))
    }

    async fn stop_container(
        &self,
        request: Request<v1::StopContainerRequest>,
    ) -> Result<Response<v1::StopContainerResponse>, Status> {
        Ok(Response::new(stop_container::stop_container(&self.0, request.get_ref()).await?))
    }

    async fn remove_container(
        &self,
        request: Request<v1::RemoveContainerRequest>,
    ) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        Ok(Response::new(remove_container::remove_container(&self.0, request.get_ref()).await?))
    }

    async fn list_containers(
        &self,
        request: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        Ok(Response::new(list_containers::list_containers(&self.0, request.get_ref()).await?))
    }

    async fn container_status(
        &self,
        request: Request<v1::ContainerStatusRequest>,
    ) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        Ok(Response::new(container_status::container_status(&self.0, request.get_ref()).await?))
    }

    async fn update_container_resources(
        &self,
        request: Request<v1::UpdateContainerResourcesRequest>,
    ) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        Ok(Response::new(update_container_resources::update_container_resources(&self.0, request.get_ref()).await?))
    }

    async fn reopen_container_log(
        &self,
        request: Request<v1::ReopenContainerLogRequest>,
    ) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        Ok(Response::new(reopen_container_log::reopen_container_log(&self.0, request.get_ref()).await?))
    }

    async fn checkpoint_container(
        &self,
        request: Request<v1::CheckpointContainerRequest>,
    ) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        Ok(Response::new(checkpoint_container::checkpoint_container(&self.0, request.get_ref()).await?))
    }

    async fn exec_sync(&self, request: Request<v1::ExecSyncRequest>) -> Result<Response<v1::ExecSyncResponse>, Status> {
        Ok(Response::new(exec_sync::exec_sync(&self.0, request.get_ref()).await?))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<v1::RunPodSandboxRequest>,
    ) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        Ok(Response::new(run_pod_sandbox::run_pod_sandbox(&self.0, request.into_inner()).await?))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<v1::StopPodSandboxRequest>,
    ) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        Ok(Response::new(stop_pod_sandbox::stop_pod_sandbox(&self.0, request.get_ref()).await?))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<v1::RemovePodSandboxRequest>,
    ) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        Ok(Response::new(remove_pod_sandbox::remove_pod_sandbox(&self.0, request.get_ref()).await?))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<v1::PodSandboxStatusRequest>,
    ) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        Ok(Response::new(pod_sandbox_status::pod_sandbox_status(&self.0, request.get_ref()).await?))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<v1::ListPodSandboxRequest>,
    ) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        Ok(Response::new(list_pod_sandbox::list_pod_sandbox(&self.0, request.get_ref()).await?))
    }

    async fn get_container_events(
        &self,
        _: Request<v1::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(get_container_events::get_container_events(&self.0)))
    }

    async fn stream_pod_sandboxes(
        &self,
        request: Request<v1::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        Ok(Response::new(streams::pod_sandboxes(&self.0, request.into_inner()).await?))
    }

    async fn stream_containers(
        &self,
        request: Request<v1::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        Ok(Response::new(streams::containers(&self.0, request.into_inner()).await?))
    }

    async fn stream_container_stats(
        &self,
        request: Request<v1::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        Ok(Response::new(streams::container_stats(&self.0, request.into_inner()).await?))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<v1::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        Ok(Response::new(streams::pod_sandbox_stats(&self.0, request.into_inner()).await?))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<v1::ListMetricDescriptorsRequest>,
    ) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(list_metric_descriptors::list_metric_descriptors()))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(list_pod_sandbox_metrics::list_pod_sandbox_metrics(&self.0, request.get_ref()).await?))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        request: Request<v1::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Ok(Response::new(streams::pod_sandbox_metrics(&self.0, request.into_inner()).await?))
    }

    type StreamPodSandboxesStream = Streamed<v1::StreamPodSandboxesResponse>;
    type StreamContainersStream = Streamed<v1::StreamContainersResponse>;
    type GetContainerEventsStream = Streamed<v1::ContainerEventResponse>;
    type StreamContainerStatsStream = Streamed<v1::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = Streamed<v1::StreamPodSandboxStatsResponse>;
    type StreamPodSandboxMetricsStream = Streamed<v1::StreamPodSandboxMetricsResponse>;

    unimplemented_rpcs! {
        exec(ExecRequest) -> v1::ExecResponse = "Exec";
        attach(AttachRequest) -> v1::AttachResponse = "Attach";
        port_forward(PortForwardRequest) -> v1::PortForwardResponse = "PortForward";
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    type StreamImagesStream = Streamed<v1::StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<v1::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        Ok(Response::new(streams::images(&self.0, request.into_inner()).await?))
    }

    async fn list_images(&self, request: Request<v1::ListImagesRequest>) -> Result<Response<v1::ListImagesResponse>, Status> {
        Ok(Response::new(list_images::list_images(&self.0, request.get_ref()).await?))
    }

    async fn image_status(&self, request: Request<v1::ImageStatusRequest>) -> Result<Response<v1::ImageStatusResponse>, Status> {
        Ok(Response::new(image_status::image_status(&self.0, request.get_ref()).await?))
    }

    async fn pull_image(&self, request: Request<v1::PullImageRequest>) -> Result<Response<v1::PullImageResponse>, Status> {
        Ok(Response::new(pull_image::pull_image(&self.0, request.get_ref()).await?))
    }

    async fn remove_image(&self, request: Request<v1::RemoveImageRequest>) -> Result<Response<v1::RemoveImageResponse>, Status> {
        Ok(Response::new(remove_image::remove_image(&self.0, request.get_ref()).await?))
    }

    async fn image_fs_info(&self, request: Request<v1::ImageFsInfoRequest>) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        Ok(Response::new(image_fs_info::image_fs_info(&self.0, request.get_ref()).await?))
    }
}
