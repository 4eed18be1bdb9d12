//! What the store keeps about images, and the image view the front doors get.
//!
//! Two tables: `images` keyed by image ID (the config digest), and `image_names`
//! keyed by fully qualified name (`registry/repo:tag` or `registry/repo@sha256:...`),
//! each name pointing at one image ID.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::Table;

pub const IMAGES: Table<ImageRecord> = Table::new("images");
pub const IMAGE_NAMES: Table<NameRecord> = Table::new("image_names");

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest, size and media type of the (compressed) blob.
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// Digest of the uncompressed tar, from the config's rootfs.
    pub diff_id: String,
    /// Chain ID: the key of this layer's snapshot.
    pub chain_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    /// The index (manifest list) this manifest was chosen from, when there was one.
    pub index_digest: Option<String>,
    pub config_size: u64,
    pub layers: Vec<LayerRecord>,
    pub config: ConfigFile,
    /// Seconds since the epoch when it arrived.
    pub added: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub image_id: String,
}

/// The parts of an OCI image config this library reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigFile {
    pub created: Option<String>,
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub config: ImageConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
}

/// How a container of this image runs (`config` in the OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker's `HEALTHCHECK` (Test, Interval, Timeout, StartPeriod, StartInterval, Retries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image as the front doors see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `sha256:<hex>` of the config.
    pub id: String,
    /// `registry/repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:<manifest>` names.
    pub repo_digests: Vec<String>,
    pub manifest_digest: String,
    /// Bytes of the compressed layers, config and manifest (what a pull transfers).
    pub size: u64,
    pub config: ImageConfig,
    pub history: Vec<History>,
    pub diff_ids: Vec<String>,
    pub layers: Vec<LayerRecord>,
    /// The snapshot key of the top layer (None for an image without layers).
    pub top_chain_id: Option<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub created: Option<String>,
    pub author: Option<String>,
}

impl Image {
    pub(crate) fn from_record(record: &ImageRecord, names: Vec<String>, manifest_size: u64) -> Image {
        let (repo_digests, repo_tags): (Vec<String>, Vec<String>) = names.into_iter().partition(|name| name.contains('@'));
        let layer_bytes: u64 = record.layers.iter().map(|layer| layer.size).sum();
        Image {
            id: record.id.clone(),
            repo_tags,
            repo_digests,
            manifest_digest: record.manifest_digest.clone(),
            size: layer_bytes + record.config_size + manifest_size,
            config: record.config.config.clone(),
            history: record.config.history.clone(),
            diff_ids: record.config.rootfs.diff_ids.clone(),
            layers: record.layers.clone(),
            top_chain_id: record.layers.last().map(|layer| layer.chain_id.clone()),
            os: record.config.os.clone(),
            architecture: record.config.architecture.clone(),
            variant: record.config.variant.clone(),
            created: record.config.created.clone(),
            author: record.config.author.clone(),
        }
    }
}

/// The chain IDs of a list of diff IDs (OCI image spec: `ChainID(L0) = DiffID(L0)`,
/// `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => crate::content::sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}
