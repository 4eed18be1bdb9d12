//! Garbage collection: blobs and committed snapshots that no image, no active snapshot
//! (a container's writable layer) and no in-flight pull references are removed.
use std::collections::HashSet;

use super::record::IMAGES;
use super::{ImageError, ImageService};
use crate::snapshot::SnapshotKind;

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    pub bytes_freed: u64,
}

impl ImageService {
    /// Removes every unreferenced blob and snapshot.
    pub fn gc(&self) -> Result<GcReport, ImageError> {
        self.collect(None)
    }

    /// Everything an image or an active snapshot keeps alive.
    fn gc_roots(&self) -> Result<HashSet<String>, ImageError> {
        let mut roots = HashSet::new();
        for (id, image) in self.inner.store.list(IMAGES)? {
            roots.insert(id);
            roots.insert(image.manifest_digest.clone());
            roots.extend(image.index_digest.clone());
            for layer in &image.layers {
                roots.insert(layer.digest.clone());
                roots.insert(layer.chain_id.clone());
            }
        }
        for (_, record) in self.inner.snapshots.list()? {
            if record.kind == SnapshotKind::Active {
                let chain = self.inner.snapshots.chain(record.parent.as_deref())?;
                roots.extend(chain.into_iter().map(|(key, _)| key));
            }
        }
        Ok(roots)
    }

    /// Removes unreferenced blobs and committed snapshots; only those in `only` when
    /// given. The lease table stays locked throughout, so a pull that holds an item
    /// before looking at it never sees it vanish.
    pub(crate) fn collect(&self, only: Option<&HashSet<String>>) -> Result<GcReport, ImageError> {
        let leases = self.inner.leases.lock();
        let roots = self.gc_roots()?;
        let garbage = |item: &String| !roots.contains(item) && !leases.contains_key(item) && only.is_none_or(|set| set.contains(item));
        let mut report = GcReport::default();
        for (key, record) in self.inner.snapshots.list()? {
            if record.kind == SnapshotKind::Committed && garbage(&key) {
                self.inner.snapshots.remove(&key)?;
                report.snapshots_removed += 1;
            }
        }
        for digest in self.inner.content.list()? {
            if garbage(&digest) {
                report.bytes_freed += self.inner.content.size(&digest).unwrap_or(0);
                self.inner.content.delete(&digest)?;
                report.blobs_removed += 1;
            }
        }
        tracing::info!(?report, "garbage collected");
        Ok(report)
    }
}
