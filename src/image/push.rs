//! Pushing an image to a registry: for each blob, an existence check, then a
//! cross-repository mount when the image came from another repository of the same
//! registry, else a streamed upload; then the manifest under the target tag.
use bytes::Bytes;
use futures_util::stream::{self, Stream};
use oci_client::{Reference, RegistryOperation};
use tokio::io::AsyncReadExt;

use super::config::Endpoint;
use super::error::registry_error;
use super::record::{NameRecord, IMAGES, IMAGE_NAMES};
use super::registry::RegistrySession;
use super::{reference, Credentials, ImageError, ImageService};

impl ImageService {
    /// Pushes the image `source` (name or ID) as `target` (`registry/repo:tag`), tags
    /// it locally as `target`, and returns the manifest digest.
    pub async fn push(&self, source: &str, target: &str, auth: Option<Credentials>) -> Result<String, ImageError> {
        let id = self.resolve_id(source)?;
        let record = self.inner.store.get(IMAGES, &id)?.ok_or_else(|| ImageError::NotFound(id.clone()))?;
        let target_ref = reference::parse(target)?;
        let tag = reference::tag_name(&target_ref)
            .ok_or_else(|| ImageError::InvalidReference { reference: target.to_string(), reason: "push needs a tag".into() })?;
        let host = target_ref.registry().to_string();
        let endpoint = Endpoint { plain_http: self.inner.config.registry.get(&host).is_some_and(|h| h.insecure), host, is_mirror: false };
        let session = RegistrySession::authenticate(&self.inner.config, &target_ref, &endpoint, auth.as_ref(), RegistryOperation::Push).await?;
        let mount_sources = self.mount_sources(&id, &target_ref)?;
        let mut blobs: Vec<(String, u64)> = record.layers.iter().map(|layer| (layer.digest.clone(), layer.size)).collect();
        blobs.push((record.id.clone(), record.config_size));
        for (digest, _) in &blobs {
            self.push_blob(&session, digest, &mount_sources).await?;
        }
        let manifest = self.inner.content.read(&record.manifest_digest, super::manifest::MANIFEST_LIMIT)?;
        let content_type = reqwest::header::HeaderValue::from_str(&record.manifest_media_type)
            .map_err(|error| ImageError::InvalidImage(error.to_string()))?;
        session
            .client
            .push_manifest_raw(&session.reference, manifest, content_type)
            .await
            .map_err(|error| registry_error(&session.endpoint, error))?;
        let digest_name = reference::digest_name(&target_ref, &record.manifest_digest);
        self.inner.store.write(|txn| {
            for name in [&tag, &digest_name] {
                txn.put(IMAGE_NAMES, name, &NameRecord { image_id: id.clone() })?;
            }
            Ok::<_, ImageError>(())
        })?;
        tracing::info!(%target, digest = %record.manifest_digest, "pushed");
        Ok(record.manifest_digest)
    }

    /// Other repositories of the target's registry that this image was named in.
    fn mount_sources(&self, id: &str, target: &Reference) -> Result<Vec<Reference>, ImageError> {
        let names = self.inner.store.list(IMAGE_NAMES)?;
        let sources = names
            .into_iter()
            .filter(|(_, name)| name.image_id == id)
            .filter_map(|(name, _)| reference::parse(&name).ok())
            .filter(|source| source.registry() == target.registry() && source.repository() != target.repository())
            .collect();
        Ok(sources)
    }

    async fn push_blob(&self, session: &RegistrySession, digest: &str, mount_sources: &[Reference]) -> Result<(), ImageError> {
        let failed = |error| registry_error(&session.endpoint, error);
        if session.client.blob_exists(&session.reference, digest).await.map_err(failed)? {
            return Ok(());
        }
        for source in mount_sources {
            let mounted = session.client.mount_blob(&session.reference, source, digest).await;
            if mounted.is_ok() && session.client.blob_exists(&session.reference, digest).await.map_err(failed)? {
                tracing::debug!(%digest, from = %source, "mounted blob");
                return Ok(());
            }
        }
        let file = tokio::fs::File::open(self.inner.content.blob_path(digest)?).await.map_err(ImageError::io(digest))?;
        session.client.push_blob_stream(&session.reference, file_stream(file), digest, None).await.map_err(failed)?;
        Ok(())
    }
}

/// A file as a stream of 1 MiB chunks.
fn file_stream(file: tokio::fs::File) -> impl Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static {
    stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(file)))
            }
            Err(error) => Some((Err(error.into()), None)),
        }
    })
}
