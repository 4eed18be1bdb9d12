//! Making images locally: committing a container's active snapshot into a new layer
//! on top of its image (`docker commit`), importing a plain root filesystem tarball
//! (`docker import`), and the step both share: storing a layer blob, unpacking it into
//! its snapshot, and recording an image from a config and its layers.
use std::io::{BufReader, Read, Write};

use super::leases::Lease;
use super::manifest::{self, Compression, Descriptor, Manifest};
use super::pull::{run_blocking, HashingReader, Unpacker};
use super::record::{chain_ids, ConfigFile, History, ImageConfig, ImageRecord, LayerRecord, IMAGES};
use super::{reference, Image, ImageError, ImageService, Platform};
use crate::content::Hasher;
use crate::snapshot::diff::write_layer_tar;
use crate::snapshot::{now_seconds, SnapshotKind};

/// Counts and hashes what is written through it (the uncompressed tar).
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl ImageService {
    /// Commits the active snapshot `key` (made from image `parent_image`) into a new
    /// gzip layer and records a new image: the parent's layers plus that one, the
    /// parent's config with `config` (when given) and a history entry, named `name`.
    pub async fn commit_active(&self, key: &str, parent_image: &str, config: Option<ImageConfig>, comment: &str, name: Option<&str>) -> Result<Image, ImageError> {
        let record = self.inner.snapshots.get(key)?.ok_or_else(|| ImageError::NotFound(format!("snapshot {key}")))?;
        if record.kind != SnapshotKind::Active {
            return Err(ImageError::InvalidReference { reference: key.to_string(), reason: "not an active snapshot".into() });
        }
        let parent = self.get(parent_image)?;
        let parent_record: ImageRecord = self.inner.store.get(IMAGES, &parent.id)?.ok_or_else(|| ImageError::NotFound(parent.id.clone()))?;
        let upper = self.inner.snapshots.fs_dir(&record);
        let content = self.inner.content.clone();
        let (digest, size, diff_id) = run_blocking(move || {
            let ingest = content.begin_unknown()?;
            let gzip = flate2::write::GzEncoder::new(ingest, flate2::Compression::fast());
            let mut tar = HashingWriter { inner: gzip, hasher: Hasher::default() };
            write_layer_tar(&upper, &mut tar).map_err(ImageError::io("committing the container layer"))?;
            let diff_id = tar.hasher.finish();
            let ingest = tar.inner.finish().map_err(ImageError::io("compressing the container layer"))?;
            let (digest, size) = ingest.commit()?;
            Ok((digest, size, diff_id))
        })
        .await?;
        let mut file = parent_record.config.clone();
        if let Some(config) = config {
            file.config = config;
        }
        file.created = None;
        file.history.push(History { created_by: Some(comment.to_string()), comment: Some(comment.to_string()), ..History::default() });
        let lease = self.inner.leases.lease();
        let layer = Descriptor { media_type: manifest::OCI_LAYER_GZIP.into(), digest, size, ..Descriptor::default() };
        let mut layers = parent_record.layers.clone();
        layers.push(self.add_layer(&lease, &layer, Some(diff_id), layers.last().map(|l| l.chain_id.clone())).await?);
        let names = name.map(full_tag).transpose()?.into_iter().collect();
        let id = self.record_local_image(&lease, file, layers, names)?;
        self.get_by_id(&id)
    }

    /// Imports a root filesystem tarball (plain, gzip or zstd) as a one-layer image.
    pub async fn import_rootfs(&self, tarball: impl Read + Send + 'static, config: ImageConfig, name: Option<&str>) -> Result<Image, ImageError> {
        let content = self.inner.content.clone();
        let (digest, size) = run_blocking(move || {
            let mut ingest = content.begin_unknown()?;
            let mut tarball = tarball;
            std::io::copy(&mut tarball, &mut ingest).map_err(ImageError::io("reading the tarball"))?;
            Ok(ingest.commit()?)
        })
        .await?;
        let media_type = match sniff_compression(&self.inner.content.open_blob(&digest)?)? {
            Compression::Gzip => manifest::OCI_LAYER_GZIP,
            Compression::Zstd => manifest::OCI_LAYER_ZSTD,
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        };
        let lease = self.inner.leases.lease();
        lease.hold(&digest);
        let layer = Descriptor { media_type: media_type.into(), digest, size, ..Descriptor::default() };
        let imported = self.add_layer(&lease, &layer, None, None).await;
        let outcome = match imported {
            Ok(layer) => {
                let platform = Platform::host();
                let history = vec![History { created_by: Some("berth import".into()), ..History::default() }];
                let file = ConfigFile { architecture: platform.architecture, os: platform.os, variant: platform.variant, config, history, ..ConfigFile::default() };
                let names = name.map(full_tag).transpose()?.into_iter().collect();
                self.record_local_image(&lease, file, vec![layer], names)
            }
            Err(error) => Err(error),
        };
        self.finish_lease(lease, outcome.is_err());
        self.get_by_id(&outcome?)
    }

    /// Unpacks a stored layer blob into its snapshot (unless it exists) and returns its
    /// record; the diff ID is checked when `diff_id` is given, computed otherwise.
    pub(crate) async fn add_layer(&self, lease: &Lease, blob: &Descriptor, diff_id: Option<String>, parent: Option<String>) -> Result<LayerRecord, ImageError> {
        lease.hold(&blob.digest);
        let compression = manifest::layer_compression(&blob.media_type)?;
        let new_layer = self.inner.snapshots.begin_layer()?;
        let unpacker = Unpacker { compression, digest: blob.digest.clone(), diff_id, target: Some(new_layer.fs()) };
        let file = self.inner.content.open_blob(&blob.digest)?;
        let diff_id = run_blocking(move || unpacker.run(BufReader::with_capacity(1 << 20, file))).await?;
        let parents: Vec<String> = parent.iter().cloned().collect();
        let chain_id = match parent.as_deref() {
            Some(parent) => chain_ids(&[parent.to_string(), diff_id.clone()]).pop().unwrap_or_default(),
            None => diff_id.clone(),
        };
        lease.hold(&chain_id);
        let _lock = self.inner.locks.lock(&chain_id).await;
        let snapshots = self.inner.snapshots.clone();
        let key = chain_id.clone();
        run_blocking(move || Ok(snapshots.commit_layer(new_layer, &key, parents.first().map(String::as_str))?)).await?;
        Ok(LayerRecord { digest: blob.digest.clone(), size: blob.size, media_type: blob.media_type.clone(), diff_id, chain_id })
    }

    /// Writes the config and an OCI manifest for `layers` and records the image with
    /// `names`; returns its ID.
    pub(crate) fn record_local_image(&self, lease: &Lease, mut config: ConfigFile, layers: Vec<LayerRecord>, names: Vec<String>) -> Result<String, ImageError> {
        config.rootfs.kind = "layers".into();
        config.rootfs.diff_ids = layers.iter().map(|layer| layer.diff_id.clone()).collect();
        let config_bytes = serde_json::to_vec(&config).map_err(|error| ImageError::InvalidImage(error.to_string()))?;
        let id = self.inner.content.write(&config_bytes)?;
        self.record_with_config(lease, (id, config_bytes.len() as u64), config, layers, names)
    }

    /// Writes an OCI manifest for a stored config and `layers` and records the image
    /// with `names`; returns its ID (the config digest).
    pub(crate) fn record_with_config(
        &self,
        lease: &Lease,
        (id, config_size): (String, u64),
        config: ConfigFile,
        layers: Vec<LayerRecord>,
        names: Vec<String>,
    ) -> Result<String, ImageError> {
        lease.hold(&id);
        let manifest = Manifest {
            schema_version: 2,
            media_type: manifest::OCI_MANIFEST.into(),
            config: Descriptor { media_type: manifest::OCI_CONFIG.into(), digest: id.clone(), size: config_size, ..Descriptor::default() },
            layers: layers.iter().map(|l| Descriptor { media_type: l.media_type.clone(), digest: l.digest.clone(), size: l.size, ..Descriptor::default() }).collect(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|error| ImageError::InvalidImage(error.to_string()))?;
        let manifest_digest = self.inner.content.write(&manifest_bytes)?;
        lease.hold(&manifest_digest);
        let record = ImageRecord {
            id: id.clone(),
            manifest_digest,
            manifest_media_type: manifest::OCI_MANIFEST.into(),
            index_digest: None,
            config_size,
            layers,
            config,
            added: now_seconds(),
        };
        self.save_image(&record, &names)?;
        Ok(id)
    }

    /// Ends a lease; after a failure, removes what it made that nothing references.
    pub(crate) fn finish_lease(&self, lease: Lease, failed: bool) {
        let made = lease.items();
        drop(lease);
        if failed {
            if let Err(error) = self.collect(Some(&made)) {
                tracing::warn!(%error, "cleaning up after a failed operation");
            }
        }
    }
}

/// The stored tag name of a reference.
pub(crate) fn full_tag(text: &str) -> Result<String, ImageError> {
    let parsed = reference::parse(text)?;
    reference::tag_name(&parsed).ok_or_else(|| ImageError::InvalidReference { reference: text.to_string(), reason: "a name needs a tag".into() })
}

/// Whether a blob starts like gzip or zstd.
pub(crate) fn sniff_compression(file: &std::fs::File) -> Result<Compression, ImageError> {
    let mut magic = [0u8; 4];
    let mut reader = HashingReader { inner: file, hasher: Hasher::default() };
    let n = reader.read(&mut magic).map_err(ImageError::io("reading a blob"))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}
