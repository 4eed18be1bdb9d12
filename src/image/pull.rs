//! Pulling an image: resolve the reference to a manifest for this platform, fetch the
//! config, then fetch every layer concurrently (bounded) as a pipeline — the download
//! is written to the content store's ingest file (on a blocking thread, see
//! `blob_writer`) and, chunk by chunk, handed to a
//! blocking worker that decompresses and untars it into the layer's own snapshot
//! directory while checking its diff ID. Layers are independent overlay directories, so
//! they unpack in parallel. Only when digest, size and diff ID all check out are the
//! blob and the snapshot committed; the image record comes last. A failed pull removes
//! whatever it made that nothing else references.
use std::io::{self, BufReader, Read};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use oci_client::Reference;
use tokio::sync::{mpsc, Semaphore};

use super::blob_writer::BlobWriter;
use super::error::is_timeout;
use super::leases::Lease;
use super::manifest::{self, Compression, Descriptor, Platform};
use super::record::{chain_ids, ConfigFile, ImageRecord, LayerRecord};
use super::registry::{RegistrySession, Resolved};
use super::{reference, Credentials, Image, ImageError, ImageService};
use crate::content::Hasher;
use crate::snapshot::unpack::unpack_layer;
use crate::snapshot::now_seconds;

/// Where one layer of a pull is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    Waiting,
    Downloading,
    Extracting,
    /// Already present; nothing to do.
    Exists,
    Done,
}

/// A progress report for one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The layer's (compressed) digest.
    pub layer: String,
    pub state: LayerState,
    pub done: u64,
    pub total: u64,
}

type ProgressSender = Option<mpsc::Sender<PullProgress>>;

/// Reports state changes reliably and byte counts when the receiver keeps up.
async fn report(progress: &ProgressSender, layer: &LayerRecord, state: LayerState, done: u64) {
    if let Some(sender) = progress {
        let update = PullProgress { layer: layer.digest.clone(), state, done, total: layer.size };
        if state == LayerState::Downloading && done > 0 {
            let _ = sender.try_send(update);
        } else {
            let _ = sender.send(update).await;
        }
    }
}

impl ImageService {
    /// Pulls `reference` for the host's platform; see [`ImageService::pull_platform`].
    pub async fn pull(
        &self,
        reference: &str,
        auth: Option<Credentials>,
        progress: Option<mpsc::Sender<PullProgress>>,
    ) -> Result<Image, ImageError> {
        self.pull_platform(reference, auth, progress, &Platform::host()).await
    }

    /// Pulls `reference` for `platform`, names the image by the reference's tag and by
    /// its repository digest, and returns it.
    pub async fn pull_platform(
        &self,
        reference: &str,
        auth: Option<Credentials>,
        progress: Option<mpsc::Sender<PullProgress>>,
        platform: &Platform,
    ) -> Result<Image, ImageError> {
        let parsed = reference::parse(reference)?;
        let lease = self.inner.leases.lease();
        let span = tracing::info_span!("pull", reference = %parsed);
        let _entered = span.enter();
        let outcome = self.pull_leased(&parsed, auth.as_ref(), &progress, platform, &lease).await;
        if outcome.is_err() {
            let made = lease.items();
            drop(lease);
            if let Err(error) = self.collect(Some(&made)) {
                tracing::warn!(%error, "cleaning up after a failed pull");
            }
        }
        let id = outcome?;
        self.get_by_id(&id)
    }

    async fn pull_leased(
        &self,
        parsed: &Reference,
        auth: Option<&Credentials>,
        progress: &ProgressSender,
        platform: &Platform,
        lease: &Lease,
    ) -> Result<String, ImageError> {
        let (session, resolved) = RegistrySession::resolve_for_pull(&self.inner.config, parsed, auth, platform).await?;
        let config_descriptor = &resolved.manifest.config;
        lease.hold(&config_descriptor.digest);
        let config = self.fetch_config(&session, config_descriptor).await?;
        let layers = layer_records(&resolved.manifest.layers, &config)?;
        for layer in &layers {
            report(progress, layer, LayerState::Waiting, 0).await;
        }
        let downloads = Semaphore::new(self.inner.config.pull.max_concurrent_downloads.max(1));
        let fetches = layers.iter().enumerate().map(|(index, layer)| {
            let parent = index.checked_sub(1).map(|below| layers[below].chain_id.as_str());
            self.fetch_layer(&session, layer, parent, lease, &downloads, progress)
        });
        futures_util::future::try_join_all(fetches).await?;
        self.store_manifests(&resolved, lease)?;
        crash_point!("pull.after_manifests");
        self.record_image(parsed, &resolved, config, layers)
    }

    /// Fetches (or reads) and parses the image config.
    async fn fetch_config(&self, session: &RegistrySession, descriptor: &Descriptor) -> Result<ConfigFile, ImageError> {
        let _lock = self.inner.locks.lock(&descriptor.digest).await;
        if !self.inner.content.contains(&descriptor.digest) {
            if descriptor.size > manifest::CONFIG_LIMIT {
                return Err(ImageError::InvalidImage(format!("config {} is larger than {} bytes", descriptor.digest, manifest::CONFIG_LIMIT)));
            }
            let mut stream = session.blob_stream(descriptor).await?;
            let mut blob = BlobWriter::start(self.inner.content.begin(&descriptor.digest, Some(descriptor.size))?, descriptor);
            while let Some(chunk) = stream.next().await {
                blob.write(chunk.map_err(|error| stream_error(&session.endpoint, error))?).await?;
            }
            blob.commit().await?;
        }
        let bytes = self.inner.content.read(&descriptor.digest, manifest::CONFIG_LIMIT)?;
        serde_json::from_slice(&bytes).map_err(|error| ImageError::InvalidImage(format!("config {}: {error}", descriptor.digest)))
    }

    /// Makes sure the layer's blob and snapshot exist, downloading and unpacking what
    /// is missing.
    async fn fetch_layer(
        &self,
        session: &RegistrySession,
        layer: &LayerRecord,
        parent: Option<&str>,
        lease: &Lease,
        downloads: &Semaphore,
        progress: &ProgressSender,
    ) -> Result<(), ImageError> {
        lease.hold(&layer.digest);
        lease.hold(&layer.chain_id);
        let _blob_lock = self.inner.locks.lock(&layer.digest).await;
        let _snapshot_lock = self.inner.locks.lock(&layer.chain_id).await;
        let need_blob = !self.inner.content.contains(&layer.digest);
        let need_snapshot = !self.inner.snapshots.exists(&layer.chain_id)?;
        if !need_blob && !need_snapshot {
            report(progress, layer, LayerState::Exists, layer.size).await;
            return Ok(());
        }
        let new_layer = if need_snapshot { Some(self.inner.snapshots.begin_layer()?) } else { None };
        let unpacker = Unpacker {
            compression: manifest::layer_compression(&layer.media_type)?,
            digest: layer.digest.clone(),
            diff_id: Some(layer.diff_id.clone()),
            target: new_layer.as_ref().map(|new| new.fs()),
        };
        if need_blob {
            let _permit = downloads.acquire().await.map_err(|_| ImageError::Unsupported("pull cancelled".into()))?;
            report(progress, layer, LayerState::Downloading, 0).await;
            let stream = session.blob_stream(&descriptor_of(layer)).await?;
            self.download_and_unpack(session, stream, layer, unpacker, progress).await?;
        } else {
            report(progress, layer, LayerState::Extracting, 0).await;
            let blob = self.inner.content.open_blob(&layer.digest)?;
            run_blocking(move || unpacker.run(BufReader::with_capacity(1 << 20, blob))).await?;
        }
        if let Some(new_layer) = new_layer {
            let snapshots = self.inner.snapshots.clone();
            let (chain_id, parent) = (layer.chain_id.clone(), parent.map(str::to_string));
            run_blocking(move || Ok(snapshots.commit_layer(new_layer, &chain_id, parent.as_deref())?)).await?;
            crash_point!("pull.after_layer_commit");
        }
        report(progress, layer, LayerState::Done, layer.size).await;
        Ok(())
    }

    /// Streams a layer into the content store and, at the same time, into the unpacker.
    async fn download_and_unpack(
        &self,
        session: &RegistrySession,
        mut stream: BoxStream<'static, io::Result<Bytes>>,
        layer: &LayerRecord,
        unpacker: Unpacker,
        progress: &ProgressSender,
    ) -> Result<(), ImageError> {
        let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(64);
        let worker = tokio::task::spawn_blocking(move || unpacker.run(ChannelReader { receiver, current: Bytes::new() }).map(drop));
        let mut worker = Some(worker);
        let descriptor = descriptor_of(layer);
        let mut blob = BlobWriter::start(self.inner.content.begin(&layer.digest, Some(layer.size))?, &descriptor);
        let mut reported = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => return Err(abandon(sender, worker, stream_error(&session.endpoint, error)).await),
            };
            if let Err(error) = blob.write(chunk.clone()).await {
                return Err(abandon(sender, worker, error).await);
            }
            if blob.written() - reported >= 1 << 20 {
                reported = blob.written();
                report(progress, layer, LayerState::Downloading, reported).await;
            }
            if worker.is_some() && sender.send(Ok(chunk)).await.is_err() {
                // The unpacker stopped early: an error, or trailing bytes after the archive.
                if let Some(handle) = worker.take() {
                    join_worker(handle).await?;
                }
            }
        }
        drop(sender);
        crash_point!("pull.after_layer_download");
        report(progress, layer, LayerState::Extracting, blob.written()).await;
        let committed = blob.commit().await;
        let unpacked = match worker {
            Some(handle) => join_worker(handle).await,
            None => Ok(()),
        };
        committed?;
        unpacked
    }

    /// Stores the manifest (and index) blobs the image is named by.
    fn store_manifests(&self, resolved: &Resolved, lease: &Lease) -> Result<(), ImageError> {
        lease.hold(&resolved.manifest_digest);
        self.inner.content.write(&resolved.manifest_bytes)?;
        if let Some((digest, bytes)) = &resolved.index {
            lease.hold(digest);
            self.inner.content.write(bytes)?;
        }
        Ok(())
    }

    /// Records the image and its names in one transaction; returns its ID.
    fn record_image(&self, parsed: &Reference, resolved: &Resolved, config: ConfigFile, layers: Vec<LayerRecord>) -> Result<String, ImageError> {
        let id = resolved.manifest.config.digest.clone();
        let repo_digest = resolved.index.as_ref().map(|(digest, _)| digest).unwrap_or(&resolved.manifest_digest);
        let mut names = vec![reference::digest_name(parsed, repo_digest)];
        names.extend(reference::tag_name(parsed));
        let record = ImageRecord {
            id: id.clone(),
            manifest_digest: resolved.manifest_digest.clone(),
            manifest_media_type: manifest::manifest_media_type(&resolved.manifest).to_string(),
            index_digest: resolved.index.as_ref().map(|(digest, _)| digest.clone()),
            config_size: resolved.manifest.config.size,
            layers,
            config,
            added: now_seconds(),
        };
        self.save_image(&record, &names)?;
        tracing::info!(%id, ?names, "pulled");
        Ok(id)
    }
}

/// The layers of a manifest with their diff IDs and chain IDs from the config.
pub(crate) fn layer_records(layers: &[Descriptor], config: &ConfigFile) -> Result<Vec<LayerRecord>, ImageError> {
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != layers.len() {
        return Err(ImageError::InvalidImage(format!(
            "the manifest has {} layers but the config lists {} diff IDs",
            layers.len(),
            diff_ids.len()
        )));
    }
    let chains = chain_ids(diff_ids);
    let records = layers
        .iter()
        .zip(diff_ids.iter().zip(chains))
        .map(|(layer, (diff_id, chain_id))| LayerRecord {
            digest: layer.digest.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
            diff_id: diff_id.clone(),
            chain_id,
        })
        .collect();
    Ok(records)
}

fn descriptor_of(layer: &LayerRecord) -> Descriptor {
    Descriptor { media_type: layer.media_type.clone(), digest: layer.digest.clone(), size: layer.size, ..Descriptor::default() }
}

fn stream_error(endpoint: &str, error: io::Error) -> ImageError {
    if is_timeout(&error) {
        return ImageError::Timeout { endpoint: endpoint.to_string(), message: error.to_string() };
    }
    let message = error.to_string();
    if message.contains("Digest error") || message.contains("VerificationError") || message.contains("digest") {
        return ImageError::DigestMismatch { what: format!("blob from {endpoint}"), expected: String::new(), actual: message };
    }
    ImageError::Registry { endpoint: endpoint.to_string(), message }
}

/// Stops the unpacker after a download error and returns that error.
async fn abandon(
    sender: mpsc::Sender<io::Result<Bytes>>,
    worker: Option<tokio::task::JoinHandle<Result<(), ImageError>>>,
    error: ImageError,
) -> ImageError {
    let _ = sender.send(Err(io::Error::other("download failed"))).await;
    drop(sender);
    if let Some(handle) = worker {
        let _ = handle.await;
    }
    error
}

async fn join_worker(handle: tokio::task::JoinHandle<Result<(), ImageError>>) -> Result<(), ImageError> {
    handle.await.map_err(|error| ImageError::io("layer unpacker")(io::Error::other(error.to_string())))?
}

pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ImageError::io("blocking task")(io::Error::other(error.to_string())))?
}

/// Decompresses and unpacks one layer stream, checking its diff ID.
pub(crate) struct Unpacker {
    pub compression: Compression,
    pub digest: String,
    /// The expected diff ID, when known.
    pub diff_id: Option<String>,
    /// Where to unpack; None only checks the stream.
    pub target: Option<std::path::PathBuf>,
}

impl Unpacker {
    /// Unpacks (or checks) the stream; returns its diff ID.
    pub fn run(self, raw: impl Read) -> Result<String, ImageError> {
        let corrupt = |error: io::Error| ImageError::CorruptLayer { digest: self.digest.clone(), message: error.to_string() };
        let decompressed: Box<dyn Read> = match self.compression {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, raw))),
            Compression::Zstd => Box::new(zstd::Decoder::new(raw).map_err(corrupt)?),
        };
        let mut hashing = HashingReader { inner: decompressed, hasher: Hasher::default() };
        match &self.target {
            Some(target) => {
                let (_, rest) = unpack_layer(&mut hashing, target).map_err(|error| ImageError::from_unpack(&self.digest, error))?;
                io::copy(rest, &mut io::sink()).map_err(corrupt)?;
            }
            None => {
                io::copy(&mut hashing, &mut io::sink()).map_err(corrupt)?;
            }
        }
        let actual = hashing.hasher.finish();
        match self.diff_id {
            Some(expected) if expected != actual => Err(ImageError::DigestMismatch {
                what: format!("uncompressed layer {} (diff ID)", self.digest),
                expected,
                actual,
            }),
            _ => Ok(actual),
        }
    }
}

/// Hashes what passes through.
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..n]);
        Ok(n)
    }
}

/// Reads the chunks a download sends through a channel.
struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
