//! The content-addressed blob store: `<root>/content/blobs/sha256/<hex>`. A blob is
//! written to `<root>/content/ingest/` while its digest is computed, and renamed into
//! place only when its digest and size match what was expected, so a blob that exists is
//! always whole and correct. Whatever an interrupted writer left in `ingest/` is removed
//! when the store opens.
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("invalid digest {0:?} (expected sha256:<64 lowercase hex>)")]
    InvalidDigest(String),
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: String, expected: u64, actual: u64 },
    #[error("blob {digest} is larger than {limit} bytes")]
    TooLarge { digest: String, limit: u64 },
    #[error("content store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io { path: path.display().to_string(), source }
}

/// Returns the hex part of a `sha256:<hex>` digest after checking its form (which also
/// keeps a hostile digest from naming a path outside the store).
pub fn digest_hex(digest: &str) -> Result<&str, ContentError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    hex.ok_or_else(|| ContentError::InvalidDigest(digest.to_string()))
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A running sha256 whose result is formatted as a digest.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finalize()))
    }
}

/// The blob store rooted at `<root>/content`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

static INGEST_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens the store under `root` (creating its directories) and removes stale ingests.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        crate::private_fs::create_private_dir(&root.join("content")).map_err(io_error(root))?;
        std::fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
        if ingest.exists() {
            std::fs::remove_dir_all(&ingest).map_err(io_error(&ingest))?;
        }
        std::fs::create_dir_all(&ingest).map_err(io_error(&ingest))?;
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ContentError> {
        Ok(self.blobs.join(digest_hex(digest)?))
    }

    /// The size of a stored blob, or None when it is absent.
    pub fn size(&self, digest: &str) -> Option<u64> {
        let path = self.blob_path(digest).ok()?;
        std::fs::metadata(path).ok().map(|meta| meta.len())
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.size(digest).is_some()
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File, ContentError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(digest.to_string()),
            _ => ContentError::Io { path: path.display().to_string(), source: error },
        })
    }

    /// Reads a whole blob that must not exceed `limit` bytes (manifests, configs).
    pub fn read(&self, digest: &str, limit: u64) -> Result<Vec<u8>, ContentError> {
        let mut file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        let path = self.blob_path(digest)?;
        Read::by_ref(&mut file).take(limit + 1).read_to_end(&mut bytes).map_err(io_error(&path))?;
        if bytes.len() as u64 > limit {
            return Err(ContentError::TooLarge { digest: digest.to_string(), limit });
        }
        Ok(bytes)
    }

    /// Stores small bytes (a manifest or config) and returns their digest.
    pub fn write(&self, bytes: &[u8]) -> Result<String, ContentError> {
        let digest = sha256_digest(bytes);
        if !self.contains(&digest) {
            let mut ingest = self.begin(&digest, Some(bytes.len() as u64))?;
            ingest.write_all(bytes).map_err(io_error(&self.ingest))?;
            ingest.commit()?;
        }
        Ok(digest)
    }

    /// Starts writing the blob `digest`, expected to be `size` bytes when known.
    pub fn begin(&self, digest: &str, size: Option<u64>) -> Result<Ingest, ContentError> {
        let target = self.blob_path(digest)?;
        let n = INGEST_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.ingest.join(format!("{}-{}-{n}", digest_hex(digest)?, std::process::id()));
        Ok(Ingest { file: IngestFile::create(path)?, target, digest: digest.to_string(), size })
    }

    /// Starts writing a blob whose digest is known only at the end (a layer being made).
    pub fn begin_unknown(&self) -> Result<UnknownIngest, ContentError> {
        let n = INGEST_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.ingest.join(format!("new-{}-{n}", std::process::id()));
        Ok(UnknownIngest { file: IngestFile::create(path)?, store: self.clone() })
    }

    /// Every stored blob's digest.
    pub fn list(&self) -> Result<Vec<String>, ContentError> {
        let entries = std::fs::read_dir(&self.blobs).map_err(io_error(&self.blobs))?;
        let mut digests = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error(&self.blobs))?;
            digests.push(format!("sha256:{}", entry.file_name().to_string_lossy()));
        }
        Ok(digests)
    }

    /// Removes a blob; absent blobs are not an error.
    pub fn delete(&self, digest: &str) -> Result<(), ContentError> {
        let path = self.blob_path(digest)?;
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(io_error(&path)(error)),
            _ => Ok(()),
        }
    }

    /// Total bytes and number of blobs.
    pub fn usage(&self) -> Result<(u64, u64), ContentError> {
        let mut bytes = 0;
        let mut count = 0;
        for digest in self.list()? {
            bytes += self.size(&digest).unwrap_or(0);
            count += 1;
        }
        Ok((bytes, count))
    }
}

/// A file in `ingest/` being written and hashed; removed on drop unless renamed.
struct IngestFile {
    file: Option<File>,
    path: PathBuf,
    hasher: Hasher,
    written: u64,
}

impl IngestFile {
    fn create(path: PathBuf) -> Result<IngestFile, ContentError> {
        let file = File::create(&path).map_err(io_error(&path))?;
        Ok(IngestFile { file: Some(file), path, hasher: Hasher::default(), written: 0 })
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("ingest closed"))?;
        file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// The digest of what was written.
    fn digest(&mut self) -> String {
        std::mem::take(&mut self.hasher).finish()
    }

    /// Makes the data durable, renames it to `target`, and makes the rename durable
    /// (an fsync of the directory), so that a crash cannot lose a blob the store
    /// reported written.
    fn land(mut self, target: &Path) -> Result<(), ContentError> {
        if let Some(file) = self.file.take() {
            file.sync_data().map_err(io_error(&self.path))?;
        }
        std::fs::rename(&self.path, target).map_err(io_error(&self.path))?;
        let directory = target.parent().unwrap_or(Path::new("/"));
        File::open(directory).and_then(|dir| dir.sync_all()).map_err(io_error(directory))
    }
}

impl Drop for IngestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A blob being written; removed unless [`Ingest::commit`] succeeds.
pub struct Ingest {
    file: IngestFile,
    target: PathBuf,
    digest: String,
    size: Option<u64>,
}

impl Write for Ingest {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.size {
            if self.file.written + bytes.len() as u64 > size {
                let digest = &self.digest;
                return Err(io::Error::other(format!("blob {digest} is longer than its declared {size} bytes")));
            }
        }
        self.file.append(bytes)?;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Ingest {
    pub fn written(&self) -> u64 {
        self.file.written
    }

    /// Checks size and digest, then renames the blob into place.
    pub fn commit(mut self) -> Result<(), ContentError> {
        let written = self.file.written;
        if let Some(expected) = self.size.filter(|size| *size != written) {
            return Err(ContentError::SizeMismatch { digest: self.digest.clone(), expected, actual: written });
        }
        let actual = self.file.digest();
        if actual != self.digest {
            return Err(ContentError::DigestMismatch { expected: self.digest.clone(), actual });
        }
        self.file.land(&self.target)
    }
}

/// A blob whose digest is learnt from its content; see [`ContentStore::begin_unknown`].
pub struct UnknownIngest {
    file: IngestFile,
    store: ContentStore,
}

impl Write for UnknownIngest {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.file.append(bytes)?;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UnknownIngest {
    /// Renames the blob into place; returns its digest and size.
    pub fn commit(mut self) -> Result<(String, u64), ContentError> {
        let digest = self.file.digest();
        let written = self.file.written;
        let target = self.store.blob_path(&digest)?;
        self.file.land(&target)?;
        Ok((digest, written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_lands_only_when_digest_and_size_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let digest = sha256_digest(b"hello");
        let mut wrong = store.begin(&digest, Some(5)).unwrap();
        wrong.write_all(b"hellO").unwrap();
        assert!(matches!(wrong.commit(), Err(ContentError::DigestMismatch { .. })));
        let mut short = store.begin(&digest, Some(6)).unwrap();
        short.write_all(b"hello").unwrap();
        assert!(matches!(short.commit(), Err(ContentError::SizeMismatch { .. })));
        let mut long = store.begin(&digest, Some(4)).unwrap();
        assert!(long.write_all(b"hello").is_err());
        drop(long);
        assert!(!store.contains(&digest));
        assert_eq!(std::fs::read_dir(dir.path().join("content/ingest")).unwrap().count(), 0);
        assert_eq!(store.write(b"hello").unwrap(), digest);
        assert_eq!(store.read(&digest, 5).unwrap(), b"hello");
        assert!(matches!(store.read(&digest, 4), Err(ContentError::TooLarge { .. })));
    }

    #[test]
    fn hostile_digests_are_refused() {
        for bad in ["sha256:../../etc", "md5:abc", "sha256:ABCDEF", ""] {
            assert!(matches!(digest_hex(bad), Err(ContentError::InvalidDigest(_))), "{bad}");
        }
    }
}
