//! Image archives: export as one tar that is both a `docker save` archive
//! (`manifest.json`) and an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), and import of either kind (including the older `docker save`
//! layout with `<id>/layer.tar` files). Every file of an imported archive goes through
//! the content store's digest check; `blobs/sha256/<hex>` files must match their name.
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::commit::sniff_compression;
use super::leases::Lease;
use super::manifest::{self, Descriptor, Document, Index, OCI_INDEX};
use super::pull::run_blocking;
use super::record::{ConfigFile, ImageRecord, LayerRecord, IMAGES};
use super::{reference, Image, ImageError, ImageService, Platform};
use crate::content::{digest_hex, ContentStore};

/// One entry of `manifest.json` (docker save).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const METADATA_FILES: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];

impl ImageService {
    /// Writes the images (names or IDs) as one archive to `out`.
    pub fn export(&self, references: &[&str], out: impl Write) -> Result<(), ImageError> {
        let mut builder = tar::Builder::new(out);
        let mut written = std::collections::HashSet::new();
        let (mut docker, mut index) = (Vec::new(), Vec::new());
        for text in references {
            let image = self.get(text)?;
            let record: ImageRecord = self.inner.store.get(IMAGES, &image.id)?.ok_or_else(|| ImageError::NotFound(image.id.clone()))?;
            let tags = if reference::as_image_id(text).is_some() { image.repo_tags.clone() } else { vec![super::commit::full_tag(text)?] };
            let mut blobs: Vec<&str> = vec![&record.manifest_digest, &record.id];
            blobs.extend(record.layers.iter().map(|layer| layer.digest.as_str()));
            for digest in blobs {
                if written.insert(digest.to_string()) {
                    self.append_blob(&mut builder, digest)?;
                }
            }
            let blob_path = |digest: &str| format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap_or(digest));
            docker.push(DockerEntry { config: blob_path(&record.id), repo_tags: Some(tags.clone()), layers: record.layers.iter().map(|l| blob_path(&l.digest)).collect() });
            let size = self.inner.content.size(&record.manifest_digest).unwrap_or(0);
            for tag in tags.iter().map(Some).chain(tags.is_empty().then_some(None)) {
                let mut annotations = std::collections::BTreeMap::new();
                if let Some(tag) = tag {
                    annotations.insert(NAME_ANNOTATION.to_string(), tag.clone());
                    annotations.insert(REF_ANNOTATION.to_string(), tag.rsplit_once(':').map(|(_, t)| t.to_string()).unwrap_or_default());
                }
                index.push(Descriptor { media_type: record.manifest_media_type.clone(), digest: record.manifest_digest.clone(), size, platform: None, annotations: Some(annotations) });
            }
        }
        let index = Index { schema_version: 2, media_type: OCI_INDEX.into(), manifests: index };
        append_bytes(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append_bytes(&mut builder, "index.json", &to_json(&index)?)?;
        append_bytes(&mut builder, "manifest.json", &to_json(&docker)?)?;
        builder.into_inner().and_then(|mut out| out.flush()).map_err(ImageError::io("archive"))
    }

    fn append_blob<W: Write>(&self, builder: &mut tar::Builder<W>, digest: &str) -> Result<(), ImageError> {
        let file = self.inner.content.open_blob(digest)?;
        let size = file.metadata().map_err(ImageError::io(digest))?.len();
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let path = format!("blobs/sha256/{}", digest_hex(digest)?);
        builder.append_data(&mut header, path, file).map_err(ImageError::io("archive"))
    }

    /// Imports every image of an archive (docker save or OCI layout) and returns them.
    pub async fn import(&self, archive: impl Read + Send + 'static) -> Result<Vec<Image>, ImageError> {
        let lease = Arc::new(self.inner.leases.lease());
        let outcome = self.import_leased(archive, &lease).await;
        let lease = Arc::try_unwrap(lease).map_err(|_| ImageError::Unsupported("import lease still shared".into()))?;
        self.finish_lease(lease, outcome.is_err());
        let ids = outcome?;
        ids.iter().map(|id| self.get_by_id(id)).collect()
    }

    async fn import_leased(&self, archive: impl Read + Send + 'static, lease: &Arc<Lease>) -> Result<Vec<String>, ImageError> {
        let content = self.inner.content.clone();
        let held = lease.clone();
        let files = run_blocking(move || read_archive(archive, &content, &held)).await?;
        let mut ids = Vec::new();
        if let Some(index) = files.metadata.get("index.json") {
            let index: Index = serde_json::from_slice(index).map_err(|error| ImageError::InvalidImage(format!("index.json: {error}")))?;
            for entry in &index.manifests {
                ids.push(self.import_oci_entry(entry, lease).await?);
            }
        } else if let Some(manifest) = files.metadata.get("manifest.json") {
            let entries: Vec<DockerEntry> = serde_json::from_slice(manifest).map_err(|error| ImageError::InvalidImage(format!("manifest.json: {error}")))?;
            for entry in &entries {
                ids.push(self.import_docker_entry(entry, &files.blobs, lease).await?);
            }
        } else {
            return Err(ImageError::InvalidImage("the archive has neither index.json nor manifest.json".into()));
        }
        Ok(ids)
    }

    async fn import_oci_entry(&self, entry: &Descriptor, lease: &Lease) -> Result<String, ImageError> {
        let bytes = self.inner.content.read(&entry.digest, manifest::MANIFEST_LIMIT)?;
        let manifest = match manifest::parse_document(&bytes, &entry.digest)? {
            Document::Manifest(manifest) => manifest,
            Document::Index(index) => {
                let chosen = manifest::choose_platform(&index, &Platform::host())?;
                let child = self.inner.content.read(&chosen.digest, manifest::MANIFEST_LIMIT)?;
                match manifest::parse_document(&child, &chosen.digest)? {
                    Document::Manifest(manifest) => manifest,
                    Document::Index(_) => return Err(ImageError::InvalidImage("nested index".into())),
                }
            }
        };
        let annotations = entry.annotations.clone().unwrap_or_default();
        let names = annotations.get(NAME_ANNOTATION).or(annotations.get(REF_ANNOTATION)).and_then(|name| super::commit::full_tag(name).ok());
        self.import_image(&manifest.config, &manifest.layers, names.into_iter().collect(), lease).await
    }

    async fn import_docker_entry(&self, entry: &DockerEntry, blobs: &HashMap<String, (String, u64)>, lease: &Lease) -> Result<String, ImageError> {
        let find = |path: &String| blobs.get(path).cloned().ok_or_else(|| ImageError::InvalidImage(format!("{path} is not in the archive")));
        let (config_digest, config_size) = find(&entry.config)?;
        let config = Descriptor { media_type: manifest::DOCKER_CONFIG.into(), digest: config_digest, size: config_size, ..Descriptor::default() };
        let mut layers = Vec::new();
        for path in &entry.layers {
            let (digest, size) = find(path)?;
            let media_type = match sniff_compression(&self.inner.content.open_blob(&digest)?)? {
                manifest::Compression::Gzip => manifest::OCI_LAYER_GZIP,
                manifest::Compression::Zstd => manifest::OCI_LAYER_ZSTD,
                manifest::Compression::None => "application/vnd.oci.image.layer.v1.tar",
            };
            layers.push(Descriptor { media_type: media_type.into(), digest, size, ..Descriptor::default() });
        }
        let names = entry.repo_tags.iter().flatten().map(|tag| super::commit::full_tag(tag)).collect::<Result<Vec<_>, _>>()?;
        self.import_image(&config, &layers, names, lease).await
    }

    /// Unpacks the layers (already in the content store) and records the image.
    async fn import_image(&self, config: &Descriptor, layers: &[Descriptor], names: Vec<String>, lease: &Lease) -> Result<String, ImageError> {
        let bytes = self.inner.content.read(&config.digest, manifest::CONFIG_LIMIT)?;
        let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|error| ImageError::InvalidImage(format!("config {}: {error}", config.digest)))?;
        if file.rootfs.diff_ids.len() != layers.len() {
            return Err(ImageError::InvalidImage(format!("{} layers but {} diff IDs", layers.len(), file.rootfs.diff_ids.len())));
        }
        let mut records: Vec<LayerRecord> = Vec::new();
        for (layer, diff_id) in layers.iter().zip(&file.rootfs.diff_ids) {
            let parent = records.last().map(|record| record.chain_id.clone());
            records.push(self.add_layer(lease, layer, Some(diff_id.clone()), parent).await?);
        }
        self.record_with_config(lease, (config.digest.clone(), bytes.len() as u64), file, records, names)
    }
}

/// What an archive held: the small metadata files, and every other file's digest and
/// size by path (stored in the content store).
struct ArchiveFiles {
    metadata: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, (String, u64)>,
}

fn read_archive(archive: impl Read, content: &ContentStore, lease: &Lease) -> Result<ArchiveFiles, ImageError> {
    let mut files = ArchiveFiles { metadata: HashMap::new(), blobs: HashMap::new() };
    let mut tar = tar::Archive::new(archive);
    let corrupt = |error: std::io::Error| ImageError::InvalidImage(format!("reading the archive: {error}"));
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(corrupt)?.to_string_lossy().trim_start_matches("./").to_string();
        if METADATA_FILES.contains(&path.as_str()) {
            let mut bytes = Vec::new();
            entry.by_ref().take(manifest::MANIFEST_LIMIT + 1).read_to_end(&mut bytes).map_err(corrupt)?;
            if bytes.len() as u64 > manifest::MANIFEST_LIMIT {
                return Err(ImageError::ManifestTooLarge { what: path, limit: manifest::MANIFEST_LIMIT });
            }
            files.metadata.insert(path, bytes);
            continue;
        }
        let mut ingest = content.begin_unknown()?;
        std::io::copy(&mut entry, &mut ingest).map_err(corrupt)?;
        let (digest, size) = ingest.commit()?;
        lease.hold(&digest);
        if let Some(named) = path.strip_prefix("blobs/sha256/") {
            let expected = format!("sha256:{named}");
            if expected != digest {
                return Err(ImageError::DigestMismatch { what: format!("archive file {path}"), expected, actual: digest });
            }
        }
        files.blobs.insert(path, (digest, size));
    }
    Ok(files)
}

fn append_bytes<W: Write>(builder: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<(), ImageError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, bytes).map_err(ImageError::io("archive"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|error| ImageError::InvalidImage(error.to_string()))
}
