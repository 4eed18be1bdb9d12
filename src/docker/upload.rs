//! A request body (an image archive for `docker load` or `docker import`, a tar for
//! `docker cp`) handed to blocking code as a `Read`, streamed rather than buffered: a
//! task feeds the body into one end of a socket pair and the blocking reader reads the
//! other, so an upload of any size costs a socket buffer, not its size in memory.
use std::os::unix::net::UnixStream;

use axum::body::Body;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::{DockerError, DockerResult};

/// An upload being fed to [`Upload::reader`].
pub struct Upload {
    /// The body's bytes, then end-of-file once the client's body ended (or broke off).
    pub reader: UnixStream,
    feeding: JoinHandle<()>,
}

impl Upload {
    /// Starts feeding `body`.
    pub fn start(body: Body) -> DockerResult<Upload> {
        let pipe_error = |e: std::io::Error| DockerError::internal(format!("upload pipe: {e}"));
        let (reader, writer) = UnixStream::pair().map_err(pipe_error)?;
        writer.set_nonblocking(true).map_err(pipe_error)?;
        let writer = tokio::net::UnixStream::from_std(writer).map_err(pipe_error)?;
        Ok(Upload { reader, feeding: tokio::spawn(feed(body, writer)) })
    }

    /// A second handle on the reading end, for a reader that is moved away.
    pub fn reader_clone(&self) -> DockerResult<UnixStream> {
        self.reader.try_clone().map_err(|e| DockerError::internal(format!("upload pipe: {e}")))
    }

    /// Reads what the client still sends after the consumer stopped (a tar's trailing
    /// blocks), so that the answer does not cut its upload short; then waits for the feeder.
    pub async fn drain(self) {
        let Upload { mut reader, feeding } = self;
        let _ = tokio::task::spawn_blocking(move || std::io::copy(&mut reader, &mut std::io::sink())).await;
        let _ = feeding.await;
    }

    /// Drops the reading end (the feeder stops at its next write) and waits for the feeder.
    pub async fn abandon(self) {
        let Upload { reader, feeding } = self;
        drop(reader);
        let _ = feeding.await;
    }
}

/// Copies the body into the socket until it ends or the reader is gone.
async fn feed(body: Body, mut writer: tokio::net::UnixStream) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        if writer.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
