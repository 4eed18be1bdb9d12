//! The images service both front doors use: pull (with progress) and push, list,
//! inspect, tag, remove, garbage collection, import and export, and the snapshots a
//! container's root filesystem is made of. Metadata lives in the shared store (see
//! [`record`]), blobs in [`crate::content`], unpacked layers in [`crate::snapshot`].
mod archive;
mod blob_writer;
mod commit;
pub mod config;
mod error;
mod gc;
mod leases;
pub mod manifest;
mod pull;
mod push;
pub mod record;
pub mod reference;
mod registry;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{Credentials, PullSettings, RegistryConfig, RegistryHost};
pub use error::ImageError;
pub use manifest::Platform;
pub use pull::{LayerState, PullProgress};
pub use record::{ConfigFile, History, Image, ImageConfig, LayerRecord};
pub use crate::snapshot::OverlayMount;

use crate::content::ContentStore;
use crate::snapshot::Snapshotter;
use crate::store::Store;
use leases::{KeyedLocks, Leases};
use record::{ImageRecord, NameRecord, IMAGES, IMAGE_NAMES};

/// The images service. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    store: Store,
    config: RegistryConfig,
    content: ContentStore,
    snapshots: Snapshotter,
    leases: Leases,
    locks: KeyedLocks,
}

impl ImageService {
    /// Opens the service over `root` (`content/`, `snapshots/`) and the shared store,
    /// removing what an interrupted run left half-made.
    pub fn open(root: &Path, store: Store, config: RegistryConfig) -> Result<ImageService, ImageError> {
        let content = ContentStore::open(root)?;
        let snapshots = Snapshotter::open(root, store.clone())?;
        let inner = Inner {
            root: root.to_path_buf(),
            store,
            config,
            content,
            snapshots,
            leases: Leases::default(),
            locks: KeyedLocks::default(),
        };
        Ok(ImageService { inner: Arc::new(inner) })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.inner.content
    }

    pub fn snapshots(&self) -> &Snapshotter {
        &self.inner.snapshots
    }

    /// Every image, with its names.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let (records, names) = self.inner.store.read(|txn| Ok::<_, ImageError>((txn.list(IMAGES)?, txn.list(IMAGE_NAMES)?)))?;
        let images = records
            .iter()
            .map(|(id, record)| {
                let own: Vec<String> = names.iter().filter(|(_, name)| &name.image_id == id).map(|(key, _)| key.clone()).collect();
                self.image_view(record, own)
            })
            .collect();
        Ok(images)
    }

    /// One image by name (`busybox`, `repo@sha256:...`), ID or unique ID prefix.
    pub fn get(&self, reference_or_id: &str) -> Result<Image, ImageError> {
        let id = self.resolve_id(reference_or_id)?;
        self.get_by_id(&id)
    }

    fn get_by_id(&self, id: &str) -> Result<Image, ImageError> {
        let (record, names) = self.inner.store.read(|txn| {
            let record = txn.get(IMAGES, id)?.ok_or_else(|| ImageError::NotFound(id.to_string()))?;
            let names = txn.list(IMAGE_NAMES)?;
            Ok::<_, ImageError>((record, names))
        })?;
        let own = names.into_iter().filter(|(_, name)| name.image_id == id).map(|(key, _)| key).collect();
        Ok(self.image_view(&record, own))
    }

    fn image_view(&self, record: &ImageRecord, names: Vec<String>) -> Image {
        let manifest_size = self.inner.content.size(&record.manifest_digest).unwrap_or(0);
        Image::from_record(record, names, manifest_size)
    }

    /// The image ID a name, ID or ID prefix refers to.
    pub fn resolve_id(&self, reference_or_id: &str) -> Result<String, ImageError> {
        let not_found = || ImageError::NotFound(reference_or_id.to_string());
        if let Some(hex) = reference::as_image_id(reference_or_id) {
            let matches = self.inner.store.read(|txn| txn.list_prefix(IMAGES, &format!("sha256:{hex}")))?;
            match matches.len() {
                1 => return Ok(matches[0].0.clone()),
                n if n > 1 => return Err(ImageError::InvalidReference {
                    reference: reference_or_id.to_string(),
                    reason: "ambiguous image ID prefix".into(),
                }),
                _ if hex.len() == 64 => return Err(not_found()),
                _ => {}
            }
        }
        let name = full_name(reference_or_id)?;
        let record = self.inner.store.get(IMAGE_NAMES, &name)?.ok_or_else(not_found)?;
        Ok(record.image_id)
    }

    /// Records an image and points `names` at it, in one transaction.
    pub(crate) fn save_image(&self, record: &ImageRecord, names: &[String]) -> Result<(), ImageError> {
        self.inner.store.write(|txn| {
            txn.put(IMAGES, &record.id, record)?;
            for name in names {
                txn.put(IMAGE_NAMES, name, &NameRecord { image_id: record.id.clone() })?;
            }
            Ok(())
        })
    }

    /// Gives the image `source` (name or ID) the name `target`.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let id = self.resolve_id(source)?;
        let name = full_name(target)?;
        self.inner.store.write(|txn| {
            txn.get(IMAGES, &id)?.ok_or_else(|| ImageError::NotFound(id.clone()))?;
            txn.put(IMAGE_NAMES, &name, &NameRecord { image_id: id.clone() })?;
            Ok(())
        })
    }

    /// Removes a name; when `reference_or_id` is an ID, or no tag is left, the image
    /// record and its digest names go too, and its blobs and snapshots are collected unless something else
    /// (another image, a container's active snapshot, a pull) uses them. Returns the
    /// names removed and whether the image was deleted.
    pub fn remove(&self, reference_or_id: &str) -> Result<Removed, ImageError> {
        let id = self.resolve_id(reference_or_id)?;
        let by_name = reference::as_image_id(reference_or_id).is_none();
        let name = if by_name { Some(full_name(reference_or_id)?) } else { None };
        let removed = self.inner.store.write(|txn| {
            let names: Vec<String> = txn.list(IMAGE_NAMES)?.into_iter().filter(|(_, n)| n.image_id == id).map(|(k, _)| k).collect();
            let mut untag: Vec<String> = match &name {
                Some(name) => vec![name.clone()],
                None => names.clone(),
            };
            // Without tags the image goes, and its digest names with it (as in Docker).
            let tags_left = names.iter().any(|n| !n.contains('@') && !untag.contains(n));
            if !tags_left {
                untag = names.clone();
            }
            for name in &untag {
                txn.delete(IMAGE_NAMES, name)?;
            }
            let deleted = !tags_left;
            if deleted {
                txn.delete(IMAGES, &id)?;
            }
            Ok::<_, ImageError>(Removed { untagged: untag, deleted: deleted.then(|| id.clone()) })
        })?;
        if removed.deleted.is_some() {
            self.gc()?;
        }
        Ok(removed)
    }

    /// Bytes and inodes used by the image filesystem (blobs and snapshots).
    pub fn fs_usage(&self) -> Result<(u64, u64), ImageError> {
        let (blob_bytes, blobs) = self.inner.content.usage()?;
        let (snapshot_bytes, inodes) = self.inner.snapshots.usage()?;
        Ok((blob_bytes + snapshot_bytes, blobs + inodes))
    }

    /// Makes a container's writable layer `key` on top of the image's layers and
    /// returns how to mount it. The active snapshot keeps those layers from garbage
    /// collection until [`ImageService::remove_active`].
    pub fn prepare_active(&self, key: &str, image: &str) -> Result<OverlayMount, ImageError> {
        let image = self.get(image)?;
        Ok(self.inner.snapshots.prepare_active(key, image.top_chain_id.as_deref())?)
    }

    /// How to mount an existing active snapshot (after a daemon restart, say).
    pub fn active_mounts(&self, key: &str) -> Result<OverlayMount, ImageError> {
        Ok(self.inner.snapshots.mounts(key)?)
    }

    /// Removes a container's writable layer (it must be unmounted).
    pub fn remove_active(&self, key: &str) -> Result<(), ImageError> {
        let record = self.inner.snapshots.get(key)?.ok_or_else(|| ImageError::NotFound(format!("snapshot {key}")))?;
        if record.kind != crate::snapshot::SnapshotKind::Active {
            return Err(ImageError::InvalidReference { reference: key.to_string(), reason: "not an active snapshot".into() });
        }
        Ok(self.inner.snapshots.remove(key)?)
    }
}

/// What [`ImageService::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub untagged: Vec<String>,
    /// The image ID, when the image itself was deleted.
    pub deleted: Option<String>,
}

/// The stored name of a reference: `registry/repo:tag` or `registry/repo@digest`.
fn full_name(text: &str) -> Result<String, ImageError> {
    let parsed = reference::parse(text)?;
    match parsed.digest() {
        Some(digest) => Ok(reference::digest_name(&parsed, digest)),
        None => reference::tag_name(&parsed).ok_or_else(|| ImageError::InvalidReference {
            reference: text.to_string(),
            reason: "neither tag nor digest".into(),
        }),
    }
}
