//! Manifests, indexes and media types (Docker schema 2 and OCI), and choosing the
//! host's platform from an index.
use serde::{Deserialize, Serialize};

use super::ImageError;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Manifests and indexes larger than this are refused.
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
/// Image configs larger than this are refused.
pub const CONFIG_LIMIT: u64 = 8 * 1024 * 1024;

/// Every manifest media type a pull accepts.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on, in OCI terms.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform { architecture: architecture.into(), os: "linux".into(), variant: variant.map(str::to_string) }
    }

    fn matches(&self, candidate: &Platform) -> bool {
        let variant_fits = match (&self.variant, &candidate.variant) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        self.os == candidate.os && self.architecture == candidate.architecture && variant_fits
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a layer media type; other media types are refused.
pub fn layer_compression(media_type: &str) -> Result<Compression, ImageError> {
    let base = media_type
        .strip_prefix("application/vnd.oci.image.layer.nondistributable.v1.")
        .map(|rest| format!("application/vnd.oci.image.layer.v1.{rest}"));
    match base.as_deref().unwrap_or(media_type) {
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            Ok(Compression::Gzip)
        }
        OCI_LAYER_ZSTD => Ok(Compression::Zstd),
        other => Err(ImageError::UnsupportedMediaType(other.to_string())),
    }
}

/// A manifest document after looking at it.
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Parses manifest or index bytes, refusing oversized documents and unknown types.
pub fn parse_document(bytes: &[u8], what: &str) -> Result<Document, ImageError> {
    if bytes.len() as u64 > MANIFEST_LIMIT {
        return Err(ImageError::ManifestTooLarge { what: what.to_string(), limit: MANIFEST_LIMIT });
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: String,
        manifests: Option<serde_json::Value>,
    }
    let invalid = |error: serde_json::Error| ImageError::InvalidImage(format!("{what}: {error}"));
    let probe: Probe = serde_json::from_slice(bytes).map_err(invalid)?;
    if probe.schema_version != 2 {
        return Err(ImageError::UnsupportedMediaType(format!("manifest schema version {}", probe.schema_version)));
    }
    let is_index = match probe.media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => probe.manifests.is_some(),
        other => return Err(ImageError::UnsupportedMediaType(other.to_string())),
    };
    if is_index {
        Ok(Document::Index(serde_json::from_slice(bytes).map_err(invalid)?))
    } else {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(invalid)?;
        check_manifest_types(&manifest)?;
        Ok(Document::Manifest(manifest))
    }
}

/// Refuses a manifest whose config or layers have media types berth cannot use,
/// before anything is downloaded.
fn check_manifest_types(manifest: &Manifest) -> Result<(), ImageError> {
    if !matches!(manifest.config.media_type.as_str(), DOCKER_CONFIG | OCI_CONFIG) {
        return Err(ImageError::UnsupportedMediaType(manifest.config.media_type.clone()));
    }
    for layer in &manifest.layers {
        layer_compression(&layer.media_type)?;
    }
    Ok(())
}

/// The index entry for `platform`.
pub fn choose_platform<'a>(index: &'a Index, platform: &Platform) -> Result<&'a Descriptor, ImageError> {
    index
        .manifests
        .iter()
        .filter(|entry| matches!(entry.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | ""))
        .find(|entry| entry.platform.as_ref().is_some_and(|candidate| platform.matches(candidate)))
        .ok_or_else(|| ImageError::PlatformNotFound(platform.to_string()))
}

/// The media type to record for a manifest.
pub fn manifest_media_type(manifest: &Manifest) -> &str {
    if manifest.media_type.is_empty() {
        OCI_MANIFEST
    } else {
        &manifest.media_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_media_types_and_huge_documents_are_refused() {
        let layer = |media: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:{0}","size":1}},"layers":[{{"mediaType":"{media}","digest":"sha256:{0}","size":1}}]}}"#,
                "a".repeat(64)
            )
        };
        assert!(parse_document(layer(OCI_LAYER_ZSTD).as_bytes(), "m").is_ok());
        let unknown = parse_document(layer("application/x-mystery").as_bytes(), "m");
        assert!(matches!(unknown, Err(ImageError::UnsupportedMediaType(t)) if t == "application/x-mystery"));
        let huge = vec![b' '; MANIFEST_LIMIT as usize + 1];
        assert!(matches!(parse_document(&huge, "m"), Err(ImageError::ManifestTooLarge { .. })));
    }

    #[test]
    fn the_host_platform_is_chosen() {
        let entry = |arch: &str| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{arch}"),
            size: 1,
            platform: Some(Platform { architecture: arch.into(), os: "linux".into(), variant: None }),
            annotations: None,
        };
        let index = Index { schema_version: 2, media_type: OCI_INDEX.into(), manifests: vec![entry("s390x"), entry("amd64"), entry("arm64")] };
        let chosen = choose_platform(&index, &Platform::host()).unwrap();
        assert_eq!(chosen.platform.as_ref().unwrap().architecture, Platform::host().architecture);
        let wanted = Platform { architecture: "riscv64".into(), os: "linux".into(), variant: None };
        assert!(matches!(choose_platform(&index, &wanted), Err(ImageError::PlatformNotFound(_))));
    }
}
