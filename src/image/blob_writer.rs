//! A blob written on a blocking thread: the pull's async task sends the downloaded
//! chunks; the writes, and the commit's fsyncs and rename, happen on that thread, never
//! on one of the daemon's async workers. The declared size is checked as chunks arrive.
//! A writer dropped without [`BlobWriter::commit`] leaves nothing: the ingest file goes.
use std::io::Write;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::manifest::Descriptor;
use super::ImageError;

enum Message {
    Chunk(Bytes),
    Commit,
}

pub(crate) struct BlobWriter {
    sender: mpsc::Sender<Message>,
    worker: tokio::task::JoinHandle<Result<(), ImageError>>,
    written: u64,
    descriptor: Descriptor,
}

impl BlobWriter {
    pub(crate) fn start(ingest: crate::content::Ingest, descriptor: &Descriptor) -> BlobWriter {
        let (sender, mut receiver) = mpsc::channel(16);
        let what = format!("ingest of {}", descriptor.digest);
        let worker = tokio::task::spawn_blocking(move || {
            let mut ingest = ingest;
            while let Some(message) = receiver.blocking_recv() {
                match message {
                    Message::Chunk(chunk) => ingest.write_all(&chunk).map_err(ImageError::io(&what))?,
                    Message::Commit => return Ok(ingest.commit()?),
                }
            }
            Err(ImageError::io(&what)(std::io::Error::other("abandoned before its commit")))
        });
        BlobWriter { sender, worker, written: 0, descriptor: descriptor.clone() }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Queues a chunk, refusing a blob that grows past its declared size.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), ImageError> {
        let total = self.written + chunk.len() as u64;
        if total > self.descriptor.size {
            let what = format!("blob {}", self.descriptor.digest);
            return Err(ImageError::SizeMismatch { what, expected: self.descriptor.size, actual: total });
        }
        self.written = total;
        if self.sender.send(Message::Chunk(chunk)).await.is_err() {
            // The writing thread stopped: its error says why.
            return Err(join(&mut self.worker).await.err().unwrap_or_else(|| ImageError::io(&self.descriptor.digest)(std::io::Error::other("the blob writer stopped"))));
        }
        Ok(())
    }

    /// Checks size and digest and lands the blob (fsynced).
    pub(crate) async fn commit(mut self) -> Result<(), ImageError> {
        let _ = self.sender.send(Message::Commit).await;
        join(&mut self.worker).await
    }
}

async fn join(worker: &mut tokio::task::JoinHandle<Result<(), ImageError>>) -> Result<(), ImageError> {
    worker.await.map_err(|error| ImageError::io("blob writer")(std::io::Error::other(error.to_string())))?
}
