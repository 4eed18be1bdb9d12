//! The images library's error type, with variants the front doors map to their own
//! codes (gRPC status for CRI, HTTP status for Docker).
use crate::content::ContentError;
use crate::snapshot::unpack::UnpackError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0} not found")]
    NotFound(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("registry {endpoint}: {message}")]
    Registry { endpoint: String, message: String },
    #[error("registry {endpoint} did not answer in time: {message}")]
    Timeout { endpoint: String, message: String },
    #[error("{what}: digest mismatch, expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what}: size mismatch, expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest {what} is larger than the {limit} bytes allowed")]
    ManifestTooLarge { what: String, limit: u64 },
    #[error("no manifest for platform {0} in the image index")]
    PlatformNotFound(String),
    #[error("layer {digest} is hostile: entry {path:?}: {reason}")]
    HostileLayer { digest: String, path: String, reason: String },
    #[error("layer {digest} is corrupt: {message}")]
    CorruptLayer { digest: String, message: String },
    #[error("invalid image: {0}")]
    InvalidImage(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} is in use")]
    InUse(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Content(ContentError),
    #[error(transparent)]
    Snapshot(SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ContentError> for ImageError {
    fn from(error: ContentError) -> Self {
        match error {
            ContentError::DigestMismatch { expected, actual } => {
                ImageError::DigestMismatch { what: format!("blob {expected}"), expected, actual }
            }
            ContentError::SizeMismatch { digest, expected, actual } => {
                ImageError::SizeMismatch { what: format!("blob {digest}"), expected, actual }
            }
            ContentError::NotFound(digest) => ImageError::NotFound(digest),
            other => ImageError::Content(other),
        }
    }
}

impl From<SnapshotError> for ImageError {
    fn from(error: SnapshotError) -> Self {
        match error {
            SnapshotError::NotFound(key) => ImageError::NotFound(format!("snapshot {key}")),
            SnapshotError::AlreadyExists(key) => ImageError::AlreadyExists(format!("snapshot {key}")),
            SnapshotError::Store(error) => ImageError::Store(error),
            other => ImageError::Snapshot(other),
        }
    }
}

impl ImageError {
    /// The error for a layer whose unpacking failed.
    pub(crate) fn from_unpack(digest: &str, error: UnpackError) -> ImageError {
        match error {
            UnpackError::Hostile { path, reason } => {
                ImageError::HostileLayer { digest: digest.to_string(), path, reason: reason.to_string() }
            }
            UnpackError::Stream(error) => ImageError::CorruptLayer { digest: digest.to_string(), message: error.to_string() },
            UnpackError::Io { path, source } => ImageError::Io { path, source },
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.to_string();
        move |source| ImageError::Io { path, source }
    }
}

/// Maps the registry client's errors, naming the endpoint.
pub(crate) fn registry_error(endpoint: &str, error: oci_client::errors::OciDistributionError) -> ImageError {
    use oci_client::errors::OciDistributionError as E;
    use oci_client::errors::OciErrorCode as Code;
    let endpoint = endpoint.to_string();
    match error {
        E::AuthenticationFailure(message) => ImageError::Unauthorized(format!("{endpoint}: {message}")),
        E::UnauthorizedError { url } => ImageError::Unauthorized(format!("{endpoint}: credentials refused for {url}")),
        E::ImageManifestNotFoundError(message) => ImageError::NotFound(message),
        E::DigestError(error) => ImageError::DigestMismatch {
            what: format!("content from {endpoint}"),
            expected: String::new(),
            actual: error.to_string(),
        },
        E::RegistryError { envelope, url } if envelope_has(&envelope, &[Code::ManifestUnknown, Code::NameUnknown, Code::BlobUnknown]) => {
            ImageError::NotFound(format!("{url}: {}", describe_envelope(&envelope)))
        }
        E::RegistryError { envelope, url } if envelope_has(&envelope, &[Code::Unauthorized, Code::Denied]) => {
            ImageError::Unauthorized(format!("{url}: {}", describe_envelope(&envelope)))
        }
        E::RegistryError { envelope, url } => ImageError::Registry { endpoint, message: format!("{url}: {}", describe_envelope(&envelope)) },
        E::ServerError { code: 404, url, .. } => ImageError::NotFound(url),
        E::RequestError(error) if error.status().is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) => {
            ImageError::Unauthorized(format!("{endpoint}: {error}"))
        }
        E::RequestError(error) if error.is_timeout() => ImageError::Timeout { endpoint, message: error.to_string() },
        E::RequestError(error) => ImageError::Registry { endpoint, message: request_error_chain(&error) },
        other => ImageError::Registry { endpoint, message: other.to_string() },
    }
}

fn envelope_has(envelope: &oci_client::errors::OciEnvelope, codes: &[oci_client::errors::OciErrorCode]) -> bool {
    envelope.errors.iter().any(|error| codes.contains(&error.code))
}

fn describe_envelope(envelope: &oci_client::errors::OciEnvelope) -> String {
    let messages: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}: {}", e.code, e.message)).collect();
    messages.join("; ")
}

fn request_error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Whether an I/O error from a blob stream is a timeout of the HTTP client.
pub(crate) fn is_timeout(error: &std::io::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = error.get_ref().map(|inner| inner as &dyn std::error::Error);
    while let Some(cause) = source {
        if let Some(request) = cause.downcast_ref::<reqwest::Error>() {
            return request.is_timeout();
        }
        source = cause.source();
    }
    false
}
