//! The streaming List RPCs of cri-api 0.36 (StreamPodSandboxes, StreamContainers,
//! StreamContainerStats, StreamPodSandboxStats, StreamPodSandboxMetrics, StreamImages): the same items, filters and errors
//! as their unary List RPCs, sent as a stream of batches so that a node with many pods never
//! needs one message over gRPC's size limit (kubelet reads until the end of the stream). Each is
//! its List RPC's answer cut into messages of at most [`BATCH`] items; an error before the first
//! item is the call's error, as the List RPC's would be.

use std::sync::Arc;

use roci_cri_proto::runtime_v1 as v1;
use tonic::codegen::tokio_stream;
use tonic::Status;

use super::{
    container_stats, list_containers, list_images, list_pod_sandbox, list_pod_sandbox_metrics, pod_sandbox_stats, Cri, Streamed,
};

/// Most items per message: a pod sandbox or container is well under 10 KiB, a stats entry under
/// 2 KiB, so a message stays far below gRPC's 4 MiB default limit.
pub const BATCH: usize = 100;

/// `items` as a stream of messages of at most [`BATCH`] items (one empty message for none, so
/// that the client sees an answer).
fn batches<T: Send + 'static, R: Send + 'static>(items: Vec<T>, wrap: fn(Vec<T>) -> R) -> Streamed<R> {
    let mut messages = Vec::new();
    let mut items = items.into_iter().peekable();
    loop {
        let batch: Vec<T> = items.by_ref().take(BATCH).collect();
        messages.push(Ok(wrap(batch)));
        if items.peek().is_none() {
            break;
        }
    }
    Box::pin(tokio_stream::iter(messages))
}

pub(super) async fn pod_sandboxes(
    cri: &Arc<Cri>,
    req: v1::StreamPodSandboxesRequest,
) -> Result<Streamed<v1::StreamPodSandboxesResponse>, Status> {
    let list = list_pod_sandbox::list_pod_sandbox(cri, &v1::ListPodSandboxRequest { filter: req.filter }).await?;
    Ok(batches(list.items, |pod_sandboxes| v1::StreamPodSandboxesResponse { pod_sandboxes }))
}

pub(super) async fn containers(
    cri: &Arc<Cri>,
    req: v1::StreamContainersRequest,
) -> Result<Streamed<v1::StreamContainersResponse>, Status> {
    let list = list_containers::list_containers(cri, &v1::ListContainersRequest { filter: req.filter }).await?;
    Ok(batches(list.containers, |containers| v1::StreamContainersResponse { containers }))
}

pub(super) async fn container_stats(
    cri: &Arc<Cri>,
    req: v1::StreamContainerStatsRequest,
) -> Result<Streamed<v1::StreamContainerStatsResponse>, Status> {
    let list = container_stats::list_container_stats(cri, &v1::ListContainerStatsRequest { filter: req.filter }).await?;
    Ok(batches(list.stats, |container_stats| v1::StreamContainerStatsResponse { container_stats }))
}

pub(super) async fn pod_sandbox_stats(
    cri: &Arc<Cri>,
    req: v1::StreamPodSandboxStatsRequest,
) -> Result<Streamed<v1::StreamPodSandboxStatsResponse>, Status> {
    let list = pod_sandbox_stats::list_pod_sandbox_stats(cri, &v1::ListPodSandboxStatsRequest { filter: req.filter }).await?;
    Ok(batches(list.stats, |pod_sandbox_stats| v1::StreamPodSandboxStatsResponse { pod_sandbox_stats }))
}

pub(super) async fn pod_sandbox_metrics(
    cri: &Arc<Cri>,
    _: v1::StreamPodSandboxMetricsRequest,
) -> Result<Streamed<v1::StreamPodSandboxMetricsResponse>, Status> {
    let list = list_pod_sandbox_metrics::list_pod_sandbox_metrics(cri, &v1::ListPodSandboxMetricsRequest::default()).await?;
    Ok(batches(list.pod_metrics, |pod_sandbox_metrics| v1::StreamPodSandboxMetricsResponse { pod_sandbox_metrics }))
}

pub(super) async fn images(cri: &Arc<Cri>, req: v1::StreamImagesRequest) -> Result<Streamed<v1::StreamImagesResponse>, Status> {
    let list = list_images::list_images(cri, &v1::ListImagesRequest { filter: req.filter }).await?;
    Ok(batches(list.images, |images| v1::StreamImagesResponse { images }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn lists_go_in_batches_and_none_is_one_empty_message() {
        let sizes = |n: usize| async move {
            let stream = batches((0..n).collect::<Vec<usize>>(), |v| v);
            stream.map(|m| m.unwrap().len()).collect::<Vec<usize>>().await
        };
        assert_eq!(sizes(0).await, [0]);
        assert_eq!(sizes(3).await, [3]);
        assert_eq!(sizes(BATCH).await, [BATCH]);
        assert_eq!(sizes(2 * BATCH + 1).await, [BATCH, BATCH, 1]);
    }
}
