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
    /// given. The lease table stays locked while garbage is chosen and unlinked from
    /// what can find it (snapshot records, blob names), so a pull that holds an item
    /// before looking at it never sees it vanish; the snapshots' directories, which
    /// can be large trees, are removed after the lock is released.
    pub(crate) fn collect(&self, only: Option<&HashSet<String>>) -> Result<GcReport, ImageError> {
        self.collect_removing(only, |dir| std::fs::remove_dir_all(dir))
    }

    fn collect_removing(&self, only: Option<&HashSet<String>>, remove: impl Fn(&std::path::Path) -> std::io::Result<()>) -> Result<GcReport, ImageError> {
        let mut unreachable = Vec::new();
        let unlinked = self.unlink_garbage(only, &mut unreachable);
        for dir in unreachable {
            if let Err(error) = remove(&dir) {
                tracing::warn!(dir = %dir.display(), %error, "removing a collected snapshot (retried at the next start)");
            }
        }
        let report = unlinked?;
        tracing::info!(?report, "garbage collected");
        Ok(report)
    }

    /// The part of [`Self::collect`] under the lease lock: snapshot directories that
    /// no record names any more go to `unreachable`.
    fn unlink_garbage(&self, only: Option<&HashSet<String>>, unreachable: &mut Vec<std::path::PathBuf>) -> Result<GcReport, ImageError> {
        let leases = self.inner.leases.lock();
        let roots = self.gc_roots()?;
        let garbage = |item: &String| !roots.contains(item) && !leases.contains_key(item) && only.is_none_or(|set| set.contains(item));
        let mut report = GcReport::default();
        for (key, record) in self.inner.snapshots.list()? {
            if record.kind == SnapshotKind::Committed && garbage(&key) {
                unreachable.push(self.inner.snapshots.forget(&key)?);
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
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::super::RegistryConfig;
    use super::*;

    #[test]
    fn snapshot_directories_are_removed_after_the_lease_lock_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("meta.redb")).unwrap();
        let service = ImageService::open(dir.path(), store, RegistryConfig::default()).unwrap();
        let layer = service.inner.snapshots.begin_layer().unwrap();
        std::fs::write(layer.fs().join("file"), b"layer content").unwrap();
        service.inner.snapshots.commit_layer(layer, "sha256:unreferenced", None).unwrap();
        let removed = std::cell::RefCell::new(Vec::new());
        let report = service
            .collect_removing(None, |dir| {
                assert!(!service.inner.leases.is_locked(), "the lease lock is held while {} is removed", dir.display());
                removed.borrow_mut().push(dir.to_path_buf());
                std::fs::remove_dir_all(dir)
            })
            .unwrap();
        assert_eq!(report.snapshots_removed, 1);
        let removed = removed.into_inner();
        assert_eq!(removed.len(), 1);
        assert!(!removed[0].exists());
        assert!(service.inner.snapshots.get("sha256:unreferenced").unwrap().is_none());
    }
}
