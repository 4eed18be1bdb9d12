//! The CRI ImageService, on the core's image store.
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::core::Core;

type Reply<T> = Result<Response<T>, Status>;

pub struct Images {
    _core: Arc<Core>,
}

impl Images {
    pub fn new(core: Arc<Core>) -> Self {
        Images { _core: core }
    }
}

fn missing<T>() -> Reply<T> {
    Err(Status::unimplemented("the image service is not built yet"))
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(&self, _: Request<cri::ListImagesRequest>) -> Reply<cri::ListImagesResponse> {
        missing()
    }
    async fn image_status(&self, _: Request<cri::ImageStatusRequest>) -> Reply<cri::ImageStatusResponse> {
        missing()
    }
    async fn pull_image(&self, _: Request<cri::PullImageRequest>) -> Reply<cri::PullImageResponse> {
        missing()
    }
    async fn remove_image(&self, _: Request<cri::RemoveImageRequest>) -> Reply<cri::RemoveImageResponse> {
        missing()
    }
    async fn image_fs_info(&self, _: Request<cri::ImageFsInfoRequest>) -> Reply<cri::ImageFsInfoResponse> {
        missing()
    }
}
