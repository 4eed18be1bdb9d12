//! The hijacked connection of attach and exec start: a `101 UPGRADED` answer after
//! which the socket carries raw (TTY) or multiplexed output one way and stdin the
//! other; a client that asked for no upgrade gets the output as a streaming body.
use std::convert::Infallible;
use std::future::Future;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// The client's side of the connection after the upgrade: its stdin.
pub type Input = tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>;
/// Where output goes; the connection's write side closes when every sender is gone.
pub type Output = mpsc::Sender<Bytes>;

pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Runs `session` with the connection's output (and input, when upgraded).
pub fn respond<F, Fut>(request: &mut Request, tty: bool, session: F) -> Response
where
    F: FnOnce(Output, Option<Input>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let upgrade = request.headers().contains_key(header::UPGRADE);
    let (output, mut pending) = mpsc::channel::<Bytes>(64);
    let builder = Response::builder().header(header::CONTENT_TYPE, content_type(tty));
    if !upgrade {
        tokio::spawn(session(output, None));
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(pending).map(Ok::<_, Infallible>));
        return builder.status(StatusCode::OK).body(body).unwrap_or_default();
    }
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "the client did not complete the upgrade");
                return;
            }
        };
        let (reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        let pump = async move {
            while let Some(chunk) = pending.recv().await {
                if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        };
        tokio::join!(session(output, Some(reader)), pump);
    });
    builder
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .unwrap_or_default()
}

/// One frame of the multiplexed stream: stream number, three zeros, the big-endian
/// length, the bytes. A TTY stream carries the bytes alone.
pub fn frame(tty: bool, stream: u8, data: &[u8]) -> Bytes {
    if tty {
        return Bytes::copy_from_slice(data);
    }
    let mut framed = Vec::with_capacity(data.len() + 8);
    framed.extend_from_slice(&[stream, 0, 0, 0]);
    framed.extend_from_slice(&(data.len() as u32).to_be_bytes());
    framed.extend_from_slice(data);
    Bytes::from(framed)
}
