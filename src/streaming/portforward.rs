//! Port forwarding (`portforward.k8s.io`): each forwarded connection is a TCP
//! connection to the port on the loopback of the pod's network namespace (the host's
//! for a pod on the host network), its bytes carried both ways; a failure is reported
//! as a message on the request's error channel.
use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::spdy::frame::RST_PROTOCOL_ERROR;
use super::spdy::session::{Session, Stream, StreamWriter};
use super::Context;
use crate::core::port_forward::connect_in_netns;

pub const PROTOCOL: &str = "portforward.k8s.io";

/// Where a pod's ports are, or why it cannot be reached.
pub fn pod_network(context: &Context, pod_id: &str) -> Result<Option<PathBuf>, String> {
    context.core.pod_network(context.namespace, pod_id).map_err(|error| error.to_string())
}

/// Connects to `port` of the pod; the error is the message the client shows.
pub async fn connect(network: &Result<Option<PathBuf>, String>, pod_id: &str, port: &str) -> Result<tokio::net::TcpStream, String> {
    let failure = |message: String| format!("error forwarding port {port} to pod {pod_id}: {message}");
    let netns = network.clone().map_err(failure)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| failure(format!("invalid port {port:?}")))?;
    connect_in_netns(netns, port).await.map_err(|error| failure(format!("connecting to 127.0.0.1:{port} in the pod's network namespace: {error}")))
}

/// Copies the client's bytes into the connection; the client's end half-closes it.
pub async fn upstream(mut incoming: mpsc::UnboundedReceiver<Bytes>, mut writer: OwnedWriteHalf) {
    while let Some(bytes) = incoming.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Copies the connection's bytes to the client until the pod's side ends.
pub async fn downstream(mut reader: OwnedReadHalf, outgoing: &StreamWriter) {
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(count) => {
                if outgoing.write(&buffer[..count]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Port forwarding over SPDY: the client opens an error stream and a data stream per
/// connection, both carrying `port` and `requestID` headers.
pub async fn serve_spdy(mut session: Session, context: &Context, pod_id: &str) {
    let network = pod_network(context, pod_id);
    let mut errors: HashMap<String, StreamWriter> = HashMap::new();
    let mut data: HashMap<String, Stream> = HashMap::new();
    let mut connections = JoinSet::new();
    while let Some(stream) = session.accept().await {
        let request_id = stream.header("requestid").unwrap_or_default().to_string();
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        let (data_stream, error_writer) = match kind.as_str() {
            "error" => match data.remove(&request_id) {
                Some(found) => (found, stream.writer),
                None => {
                    errors.insert(request_id, stream.writer);
                    continue;
                }
            },
            "data" => match errors.remove(&request_id) {
                Some(found) => (stream, found),
                None => {
                    data.insert(request_id, stream);
                    continue;
                }
            },
            _ => {
                stream.writer.reset(RST_PROTOCOL_ERROR);
                continue;
            }
        };
        let (network, pod_id) = (network.clone(), pod_id.to_string());
        connections.spawn(async move { forward_pair(network, pod_id, data_stream, error_writer).await });
    }
    // The client is gone: dropping the set ends every connection it had.
}

async fn forward_pair(network: Result<Option<PathBuf>, String>, pod_id: String, data: Stream, error: StreamWriter) {
    let port = data.header("port").unwrap_or_default().to_string();
    let connection = match connect(&network, &pod_id, &port).await {
        Ok(connection) => connection,
        Err(message) => {
            let _ = error.write(message.as_bytes()).await;
            error.finish();
            data.writer.finish();
            return;
        }
    };
    let (reader, writer) = connection.into_split();
    let Stream { data: incoming, writer: outgoing, .. } = data;
    let down = async {
        downstream(reader, &outgoing).await;
        outgoing.finish();
        error.finish();
    };
    tokio::join!(upstream(incoming, writer), down);
}
