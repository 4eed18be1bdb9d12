//! Talking to registries through `oci-client`: choosing the endpoint (mirrors in
//! order, then the host), authenticating (anonymous, basic, bearer tokens from the
//! registry's token service, or a registry token given with the pull), resolving a
//! reference to a manifest for the host's platform, and streaming blobs.
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::config::{Credentials, Endpoint, RegistryConfig};
use super::error::registry_error;
use super::manifest::{self, Descriptor, Document, Manifest, Platform};
use super::ImageError;
use crate::content::sha256_digest;

/// A connection to one endpoint, authenticated for one repository.
pub(crate) struct RegistrySession {
    pub client: Client,
    pub reference: Reference,
    pub auth: RegistryAuth,
    pub endpoint: String,
}

/// The manifest chosen for a pull, with the bytes that name it.
pub(crate) struct Resolved {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: String,
    /// The index it came from, if any: (digest, bytes).
    pub index: Option<(String, Vec<u8>)>,
}

/// A client for one endpoint: plain HTTP only when that endpoint allows it.
fn client_config(config: &RegistryConfig, endpoint: &Endpoint) -> ClientConfig {
    let protocol = if endpoint.plain_http { ClientProtocol::Http } else { ClientProtocol::Https };
    ClientConfig {
        protocol,
        read_timeout: Some(config.pull.read_timeout()),
        connect_timeout: Some(config.pull.connect_timeout()),
        max_concurrent_download: config.pull.max_concurrent_downloads.max(1),
        ..ClientConfig::default()
    }
}

fn registry_auth(credentials: Option<Credentials>) -> Result<RegistryAuth, ImageError> {
    match credentials {
        None => Ok(RegistryAuth::Anonymous),
        Some(Credentials::Basic { username, password }) => Ok(RegistryAuth::Basic(username, password)),
        Some(Credentials::RegistryToken(token)) => Ok(RegistryAuth::Bearer(token)),
        Some(Credentials::IdentityToken(_)) => {
            Err(ImageError::Unsupported("identity tokens (OAuth refresh tokens) for registry login".into()))
        }
    }
}

impl RegistrySession {
    /// Connects to `endpoint` and authenticates for `operation` on the reference's
    /// repository.
    pub async fn authenticate(
        config: &RegistryConfig,
        reference: &Reference,
        endpoint: &Endpoint,
        credentials: Option<&Credentials>,
        operation: RegistryOperation,
    ) -> Result<RegistrySession, ImageError> {
        let given = credentials.cloned().or_else(|| config.credentials_for(&endpoint.host));
        let auth = registry_auth(given)?;
        let client = Client::new(client_config(config, endpoint));
        let mut reference = reference.clone();
        if endpoint.is_mirror {
            reference.set_mirror_registry(endpoint.host.clone());
        }
        client
            .auth(&reference, &auth, operation)
            .await
            .map_err(|error| registry_error(&endpoint.host, error))?;
        Ok(RegistrySession { client, reference, auth, endpoint: endpoint.host.clone() })
    }

    /// Resolves `reference` at the first endpoint that has it: mirrors in order, then
    /// the registry itself (whose error is the one reported, unless it could not be
    /// reached and a mirror said the image does not exist).
    pub async fn resolve_for_pull(
        config: &RegistryConfig,
        reference: &Reference,
        credentials: Option<&Credentials>,
        platform: &Platform,
    ) -> Result<(RegistrySession, Resolved), ImageError> {
        let mut last_error = None;
        for endpoint in config.endpoints(reference.registry()) {
            let attempt = async {
                let session = Self::authenticate(config, reference, &endpoint, credentials, RegistryOperation::Pull).await?;
                let resolved = session.resolve(platform).await?;
                Ok::<_, ImageError>((session, resolved))
            };
            match attempt.await {
                Ok(found) => return Ok(found),
                Err(error) => {
                    tracing::warn!(endpoint = %endpoint.host, %error, "endpoint failed");
                    // A mirror's "not found" says more than a registry that cannot be reached.
                    let unreachable = matches!(error, ImageError::Registry { .. } | ImageError::Timeout { .. });
                    if !(unreachable && matches!(last_error, Some(ImageError::NotFound(_)))) {
                        last_error = Some(error);
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ImageError::NotFound(reference.to_string())))
    }

    /// Fetches the manifest (through an index for the platform when there is one).
    async fn resolve(&self, platform: &Platform) -> Result<Resolved, ImageError> {
        let (bytes, digest) = self.fetch_manifest(&self.reference, None).await?;
        match manifest::parse_document(&bytes, &digest)? {
            Document::Manifest(manifest) => {
                Ok(Resolved { manifest, manifest_bytes: bytes, manifest_digest: digest, index: None })
            }
            Document::Index(index) => {
                let entry = manifest::choose_platform(&index, platform)?.clone();
                let child = self.reference.clone_with_digest(entry.digest.clone());
                let (child_bytes, child_digest) = self.fetch_manifest(&child, Some(&entry)).await?;
                let Document::Manifest(manifest) = manifest::parse_document(&child_bytes, &child_digest)? else {
                    return Err(ImageError::InvalidImage(format!("index entry {} is an index", entry.digest)));
                };
                Ok(Resolved { manifest, manifest_bytes: child_bytes, manifest_digest: child_digest, index: Some((digest, bytes)) })
            }
        }
    }

    /// Fetches manifest bytes and checks them against the digest (and size) they were
    /// asked for.
    async fn fetch_manifest(&self, reference: &Reference, expected: Option<&Descriptor>) -> Result<(Vec<u8>, String), ImageError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &manifest::ACCEPTED_MANIFESTS)
            .await
            .map_err(|error| registry_error(&self.endpoint, error))?;
        let what = format!("manifest {reference}");
        if bytes.len() as u64 > manifest::MANIFEST_LIMIT {
            return Err(ImageError::ManifestTooLarge { what, limit: manifest::MANIFEST_LIMIT });
        }
        let actual = sha256_digest(&bytes);
        if let Some(wanted) = reference.digest() {
            if wanted != actual {
                return Err(ImageError::DigestMismatch { what, expected: wanted.to_string(), actual });
            }
        }
        if let Some(descriptor) = expected {
            if descriptor.size != bytes.len() as u64 {
                return Err(ImageError::SizeMismatch { what, expected: descriptor.size, actual: bytes.len() as u64 });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// Streams a blob; the caller checks digest and size as it stores it.
    pub async fn blob_stream(&self, descriptor: &Descriptor) -> Result<BoxStream<'static, std::io::Result<Bytes>>, ImageError> {
        let descriptor = oci_descriptor(descriptor);
        let stream = self
            .client
            .pull_blob_stream(&self.reference, &descriptor)
            .await
            .map_err(|error| registry_error(&self.endpoint, error))?;
        Ok(stream.stream.boxed())
    }
}

pub(crate) fn oci_descriptor(descriptor: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size as i64,
        ..OciDescriptor::default()
    }
}
