//! The overlayfs snapshotter: image layers unpacked into `<root>/snapshots/<id>/fs`,
//! one directory per layer, keyed in the metadata store by chain ID and shared between
//! images; and active snapshots (a container's writable layer, `fs` as upperdir plus
//! `work`) on top of a chain. A layer is unpacked into `snapshots/new-*` and renamed to
//! its numeric id in the transaction that records it; directories without a record are
//! removed when the snapshotter opens, so a crash leaves nothing half-made.
pub mod diff;
pub mod unpack;
mod usage;

pub use usage::DiskUsage;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Table};

/// Snapshot records, keyed by chain ID (committed layers) or by the caller's key
/// (active snapshots).
pub const SNAPSHOTS: Table<SnapshotRecord> = Table::new("snapshots");
/// The next snapshot directory number, under the key `next`.
const SNAPSHOT_IDS: Table<u64> = Table::new("snapshot_ids");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// A read-only image layer (or a committed container layer).
    Committed,
    /// A container's writable layer.
    Active,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Directory number under `snapshots/`.
    pub id: u64,
    pub kind: SnapshotKind,
    /// The key of the committed snapshot below this one.
    pub parent: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
    /// What a committed layer uses on disk, measured once when it was committed
    /// (records written before this field have none, and are measured when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<DiskUsage>,
}

/// Errors of the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {0} not found")]
    NotFound(String),
    #[error("snapshot {0} already exists")]
    AlreadyExists(String),
    #[error("snapshot {0} is not active")]
    NotActive(String),
    #[error("snapshot {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_error(key: &str) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { key: key.to_string(), source }
}

/// How to mount a snapshot: overlay with these directories (`lowerdirs` top first).
/// With no lower layers the upper directory is meant to be bind-mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
}

impl OverlayMount {
    /// The overlay mount options (`lowerdir=...,upperdir=...,workdir=...`).
    pub fn options(&self) -> String {
        let lower: Vec<String> = self.lowerdirs.iter().map(|dir| dir.display().to_string()).collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upperdir.display(),
            self.workdir.display()
        )
    }

    /// Mounts the snapshot at `target` (overlay, or a bind mount without lowers).
    pub fn mount(&self, target: &Path) -> io::Result<()> {
        use nix::mount::{mount, MsFlags};
        if self.lowerdirs.is_empty() {
            return mount(Some(&self.upperdir), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(io::Error::from);
        }
        let options = self.options();
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str())).map_err(io::Error::from)
    }
}

/// Mounts image layers (`lowerdirs` top first) read-only at `target`: an overlay of
/// them, a read-only bind mount of a single one, nothing for none.
pub fn mount_layers_read_only(lowerdirs: &[PathBuf], target: &Path) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    let read_only = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match lowerdirs {
        [] => Ok(()),
        [single] => {
            mount(Some(single.as_path()), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
            Ok(mount(None::<&str>, target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | read_only, None::<&str>)?)
        }
        several => {
            let lower: Vec<String> = several.iter().map(|dir| dir.display().to_string()).collect();
            let options = format!("lowerdir={}", lower.join(":"));
            Ok(mount(Some("overlay"), target, Some("overlay"), read_only, Some(options.as_str()))?)
        }
    }
}

/// A layer directory being filled; removed on drop unless committed.
pub struct NewLayer {
    dir: PathBuf,
    committed: bool,
}

impl NewLayer {
    /// Where the layer's files go.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Drop for NewLayer {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

static NEW_LAYER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The snapshotter over `<root>/snapshots`.
#[derive(Clone)]
pub struct Snapshotter {
    dir: PathBuf,
    store: Store,
}

pub(crate) fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

impl Snapshotter {
    /// Opens the snapshotter and removes directories that no record owns.
    pub fn open(root: &Path, store: Store) -> Result<Snapshotter, SnapshotError> {
        let dir = root.join("snapshots");
        crate::private_fs::create_private_dir(&dir).map_err(io_error("snapshots"))?;
        let snapshotter = Snapshotter { dir, store };
        snapshotter.remove_orphan_dirs()?;
        Ok(snapshotter)
    }

    fn remove_orphan_dirs(&self) -> Result<(), SnapshotError> {
        let owned: std::collections::HashSet<String> =
            self.list()?.into_iter().map(|(_, record)| record.id.to_string()).collect();
        for entry in std::fs::read_dir(&self.dir).map_err(io_error("snapshots"))? {
            let entry = entry.map_err(io_error("snapshots"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !owned.contains(&name) {
                tracing::info!(dir = %name, "removing a snapshot directory no record owns");
                std::fs::remove_dir_all(entry.path()).map_err(io_error(&name))?;
            }
        }
        Ok(())
    }

    fn id_dir(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    pub fn get(&self, key: &str) -> Result<Option<SnapshotRecord>, SnapshotError> {
        Ok(self.store.get(SNAPSHOTS, key)?)
    }

    pub fn exists(&self, key: &str) -> Result<bool, SnapshotError> {
        Ok(self.get(key)?.is_some())
    }

    pub fn list(&self) -> Result<Vec<(String, SnapshotRecord)>, SnapshotError> {
        Ok(self.store.list(SNAPSHOTS)?)
    }

    /// The files of a snapshot (its `fs` directory).
    pub fn fs_dir(&self, record: &SnapshotRecord) -> PathBuf {
        self.id_dir(record.id).join("fs")
    }

    /// Makes an empty layer directory to unpack into.
    pub fn begin_layer(&self) -> Result<NewLayer, SnapshotError> {
        let n = NEW_LAYER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("new-{}-{n}", std::process::id()));
        let layer = NewLayer { dir, committed: false };
        std::fs::create_dir_all(layer.fs()).map_err(io_error("new layer"))?;
        Ok(layer)
    }

    /// Records `layer` as the committed snapshot `key` on top of `parent`. When `key`
    /// exists already (another pull won), the new directory is dropped.
    pub fn commit_layer(&self, mut layer: NewLayer, key: &str, parent: Option<&str>) -> Result<(), SnapshotError> {
        let usage = DiskUsage::of_dir(&layer.dir).map_err(io_error(key))?;
        let root = std::fs::File::open(layer.fs()).map_err(io_error(key))?;
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)).map_err(|errno| io_error(key)(errno.into()))?;
        self.store.write(|txn| {
            if txn.get(SNAPSHOTS, key)?.is_some() {
                return Ok(());
            }
            let id = allocate_id(txn)?;
            std::fs::rename(&layer.dir, self.id_dir(id)).map_err(io_error(key))?;
            layer.committed = true;
            let record = SnapshotRecord { id, kind: SnapshotKind::Committed, parent: parent.map(str::to_string), created: now_seconds(), usage: Some(usage) };
            txn.put(SNAPSHOTS, key, &record)?;
            Ok::<(), SnapshotError>(())
        })
    }

    /// Makes the active snapshot `key` on top of the committed snapshot `parent` and
    /// returns how to mount it.
    pub fn prepare_active(&self, key: &str, parent: Option<&str>) -> Result<OverlayMount, SnapshotError> {
        let id = self.store.write(|txn| {
            if txn.get(SNAPSHOTS, key)?.is_some() {
                return Err(SnapshotError::AlreadyExists(key.to_string()));
            }
            if let Some(parent) = parent {
                txn.get(SNAPSHOTS, parent)?.ok_or_else(|| SnapshotError::NotFound(parent.to_string()))?;
            }
            let id = allocate_id(txn)?;
            let dir = self.id_dir(id);
            for sub in ["fs", "work"] {
                std::fs::create_dir_all(dir.join(sub)).map_err(io_error(key))?;
            }
            let record = SnapshotRecord { id, kind: SnapshotKind::Active, parent: parent.map(str::to_string), created: now_seconds(), usage: None };
            txn.put(SNAPSHOTS, key, &record)?;
            Ok(id)
        })?;
        tracing::debug!(key, id, "prepared active snapshot");
        self.mounts(key)
    }

    /// How to mount the active snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<OverlayMount, SnapshotError> {
        let record = self.get(key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        if record.kind != SnapshotKind::Active {
            return Err(SnapshotError::NotActive(key.to_string()));
        }
        let lowerdirs = self.lower_dirs(record.parent.as_deref())?;
        let dir = self.id_dir(record.id);
        Ok(OverlayMount { lowerdirs, upperdir: dir.join("fs"), workdir: dir.join("work") })
    }

    /// The `fs` directories of `top` and every snapshot below it, top first.
    pub fn lower_dirs(&self, top: Option<&str>) -> Result<Vec<PathBuf>, SnapshotError> {
        Ok(self.chain(top)?.iter().map(|(_, record)| self.fs_dir(record)).collect())
    }

    /// `top` and its ancestors, top first.
    pub fn chain(&self, top: Option<&str>) -> Result<Vec<(String, SnapshotRecord)>, SnapshotError> {
        let mut chain = Vec::new();
        let mut next = top.map(str::to_string);
        while let Some(key) = next {
            let record = self.get(&key)?.ok_or_else(|| SnapshotError::NotFound(key.clone()))?;
            next = record.parent.clone();
            chain.push((key, record));
        }
        Ok(chain)
    }

    /// Removes a snapshot: the record first, then its directory (a crash in between
    /// leaves a directory that the next open removes).
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let dir = self.forget(key)?;
        std::fs::remove_dir_all(dir).map_err(io_error(key))
    }

    /// Deletes the record of `key` and returns its directory, which nothing can reach
    /// any more (ids are never reused) and which the caller removes when it holds no
    /// lock; one left behind by a crash goes at the next start.
    pub fn forget(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        let record = self.store.write(|txn| {
            let record = txn.get(SNAPSHOTS, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            txn.delete(SNAPSHOTS, key)?;
            Ok::<_, SnapshotError>(record)
        })?;
        Ok(self.id_dir(record.id))
    }

    /// Bytes and inodes used by every snapshot: the sizes recorded when each layer
    /// was committed, plus a walk of the writable layers only (they are what changes).
    pub fn usage(&self) -> Result<(u64, u64), SnapshotError> {
        let mut total = DiskUsage::default();
        for (key, record) in self.list()? {
            let layer = match record.usage {
                Some(recorded) => recorded,
                None => DiskUsage::of_dir(&self.id_dir(record.id)).map_err(io_error(&key))?,
            };
            total.add(layer);
        }
        Ok((total.bytes, total.inodes))
    }
}

fn allocate_id(txn: &crate::store::WriteTxn) -> Result<u64, StoreError> {
    let id = txn.get(SNAPSHOT_IDS, "next")?.unwrap_or(1);
    txn.put(SNAPSHOT_IDS, "next", &(id + 1))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_layer_records_its_usage_and_writable_layers_are_walked() {
        let root = std::env::temp_dir().join(format!("berth-snapshot-usage-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("root");
        let store = Store::open(&root.join("meta.redb")).expect("store");
        let snapshots = Snapshotter::open(&root, store).expect("snapshotter");
        let layer = snapshots.begin_layer().expect("new layer");
        std::fs::write(layer.fs().join("data"), vec![1u8; 64 * 1024]).expect("layer file");
        snapshots.commit_layer(layer, "sha256:layer", None).expect("commit");
        let record = snapshots.get("sha256:layer").expect("get").expect("record");
        let recorded = record.usage.expect("usage recorded at commit");
        assert!(recorded.bytes >= 64 * 1024 && recorded.inodes == 2, "{recorded:?}");
        let mounts = snapshots.prepare_active("container", Some("sha256:layer")).expect("active");
        std::fs::write(mounts.upperdir.join("written"), vec![2u8; 32 * 1024]).expect("upper file");
        let (bytes, inodes) = snapshots.usage().expect("usage");
        // A full walk also counts the two id directories, which the layers' own
        // measures leave out.
        let walked = DiskUsage::of_dir(&snapshots.dir).expect("walk");
        let id_dirs: u64 = [1, 2].iter().map(|id| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(snapshots.id_dir(*id)).expect("id dir")) * 512).sum();
        std::fs::remove_dir_all(&root).expect("cleanup");
        assert_eq!((bytes, inodes), (walked.bytes - id_dirs, walked.inodes - 2));
    }
}
