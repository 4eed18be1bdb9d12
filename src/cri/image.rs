//! The CRI ImageService, on the core's image store.
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use super::status;
use crate::core::{Core, CoreError};
use crate::image::{Credentials, Image, ImageError};

type Reply<T> = Result<Response<T>, Status>;

pub struct Images {
    core: Arc<Core>,
}

impl Images {
    pub fn new(core: Arc<Core>) -> Self {
        Images { core }
    }
}

fn image_error(error: ImageError) -> Status {
    status(CoreError::from(error))
}

fn requested(spec: Option<cri::ImageSpec>) -> Result<String, Status> {
    match spec.map(|s| s.image).filter(|image| !image.is_empty()) {
        Some(image) => Ok(image),
        None => Err(Status::invalid_argument("no image was named")),
    }
}

/// The CRI's AuthConfig as credentials: username and password (or the base64 `auth`
/// field), an identity token, or a registry token.
fn credentials(auth: Option<cri::AuthConfig>) -> Result<Option<Credentials>, Status> {
    let Some(auth) = auth else { return Ok(None) };
    if !auth.registry_token.is_empty() {
        return Ok(Some(Credentials::RegistryToken(auth.registry_token)));
    }
    if !auth.identity_token.is_empty() {
        return Ok(Some(Credentials::IdentityToken(auth.identity_token)));
    }
    if !auth.username.is_empty() {
        return Ok(Some(Credentials::Basic { username: auth.username, password: auth.password }));
    }
    if !auth.auth.is_empty() {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|e| Status::invalid_argument(format!("auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded).map_err(|_| Status::invalid_argument("auth is not UTF-8"))?;
        let (username, password) = text.split_once(':').ok_or_else(|| Status::invalid_argument("auth must be user:password"))?;
        return Ok(Some(Credentials::Basic { username: username.into(), password: password.into() }));
    }
    Ok(None)
}

fn uid_of(user: &str) -> (Option<cri::Int64Value>, String) {
    let name = user.split(':').next().unwrap_or("");
    match name.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) => (None, name.to_string()),
    }
}

fn cri_image(image: &Image) -> cri::Image {
    let (uid, username) = uid_of(image.config.user.as_deref().unwrap_or(""));
    cri::Image {
        id: image.id.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid,
        username,
        spec: Some(cri::ImageSpec { image: image.id.clone(), ..Default::default() }),
        pinned: false,
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(&self, request: Request<cri::ListImagesRequest>) -> Reply<cri::ListImagesResponse> {
        let filter = request.into_inner().filter.and_then(|f| f.image).map(|i| i.image).filter(|i| !i.is_empty());
        let images = match filter {
            Some(reference) => match self.core.images.get(&reference) {
                Ok(image) => vec![image],
                Err(ImageError::NotFound(_)) => Vec::new(),
                Err(error) => return Err(image_error(error)),
            },
            None => self.core.images.list().map_err(image_error)?,
        };
        Ok(Response::new(cri::ListImagesResponse { images: images.iter().map(cri_image).collect() }))
    }

    async fn image_status(&self, request: Request<cri::ImageStatusRequest>) -> Reply<cri::ImageStatusResponse> {
        let request = request.into_inner();
        let reference = requested(request.image)?;
        let image = match self.core.images.get(&reference) {
            Ok(image) => image,
            // The CRI answers a missing image with an empty status, not an error.
            Err(ImageError::NotFound(_)) => return Ok(Response::new(cri::ImageStatusResponse::default())),
            Err(error) => return Err(image_error(error)),
        };
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let verbose = serde_json::json!({
                "config": image.config, "history": image.history, "diffIds": image.diff_ids,
                "os": image.os, "architecture": image.architecture, "manifestDigest": image.manifest_digest,
            });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(Response::new(cri::ImageStatusResponse { image: Some(cri_image(&image)), info }))
    }

    async fn pull_image(&self, request: Request<cri::PullImageRequest>) -> Reply<cri::PullImageResponse> {
        let request = request.into_inner();
        let reference = requested(request.image)?;
        let auth = credentials(request.auth)?;
        let image = self.core.images.pull(&reference, auth, None).await.map_err(image_error)?;
        Ok(Response::new(cri::PullImageResponse { image_ref: image.id }))
    }

    async fn remove_image(&self, request: Request<cri::RemoveImageRequest>) -> Reply<cri::RemoveImageResponse> {
        let reference = requested(request.into_inner().image)?;
        match self.core.images.remove(&reference) {
            // Removing an image that is not there is not an error for the kubelet.
            Ok(_) | Err(ImageError::NotFound(_)) => Ok(Response::new(cri::RemoveImageResponse {})),
            Err(error) => Err(image_error(error)),
        }
    }

    async fn image_fs_info(&self, _: Request<cri::ImageFsInfoRequest>) -> Reply<cri::ImageFsInfoResponse> {
        // A walk of every layer: on a blocking thread, not on one of the two workers.
        let images = self.core.images.clone();
        let walked = tokio::task::spawn_blocking(move || images.fs_usage()).await;
        let (bytes, inodes) = walked.map_err(|e| Status::internal(format!("measuring the image filesystem: {e}")))?.map_err(image_error)?;
        let usage = cri::FilesystemUsage {
            timestamp: crate::core::now_nanos(),
            fs_id: Some(cri::FilesystemIdentifier { mountpoint: self.core.images.root().display().to_string() }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse { image_filesystems: vec![usage.clone()], container_filesystems: vec![usage] }))
    }
}
