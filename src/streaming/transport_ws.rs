//! The WebSocket transport. Remote command: `v4.channel.k8s.io` and
//! `v5.channel.k8s.io`, every binary message prefixed by its channel (0 stdin,
//! 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds 255, the client's "close channel"
//! signal). Port forwarding: SPDY tunnelled in binary messages
//! (`SPDY/3.1+portforward.k8s.io`, what client-go and crictl use), or the older
//! channel protocol (`portforward.k8s.io`: per `?port=`, a data channel 2i and an
//! error channel 2i+1, each opened with the port as two little-endian bytes).
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::http::{self, Request};
use super::remotecommand::{self, ClientSide, Version};
use super::spdy::session::Session;
use super::{portforward, Context, StreamRequest};

pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE_SIGNAL: u8 = 255;

enum Plan {
    Command(Version),
    Tunnel,
    PortChannels(Vec<u16>),
}

fn plan(request: &Request, stream_request: &StreamRequest) -> Result<(Plan, Option<String>), String> {
    let offers = request.header_values("sec-websocket-protocol");
    if let StreamRequest::PortForward { .. } = stream_request {
        if offers.iter().any(|offer| offer == SPDY_TUNNEL) {
            return Ok((Plan::Tunnel, Some(SPDY_TUNNEL.into())));
        }
        let ports = request.query_values("port");
        if ports.is_empty() {
            return Err("port forwarding over websocket needs a \"port\" query parameter".into());
        }
        let ports = ports.iter().map(|p| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(format!("invalid port {p:?}"))).collect::<Result<Vec<_>, _>>()?;
        let chosen = offers.iter().find(|offer| *offer == portforward::PROTOCOL || *offer == remotecommand::V4).cloned();
        return Ok((Plan::PortChannels(ports), chosen));
    }
    match Version::negotiate(&offers, true) {
        Some(version) => Ok((Plan::Command(version), Some(version.name().into()))),
        None => Err(format!("unable to negotiate a websocket protocol: client offers {offers:?}, berth serves {} and {}", remotecommand::V5, remotecommand::V4)),
    }
}

pub async fn serve<IO>(mut io: IO, request: Request, stream_request: StreamRequest, context: Arc<Context>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Some(key) = request.header("sec-websocket-key").map(str::to_string) else {
        let _ = http::respond(&mut io, 400, "websocket upgrade without Sec-WebSocket-Key").await;
        return;
    };
    let (chosen, protocol) = match plan(&request, &stream_request) {
        Ok(chosen) => chosen,
        Err(message) => {
            let _ = http::respond(&mut io, 400, &message).await;
            return;
        }
    };
    let mut headers = vec![("Upgrade", "websocket".to_string()), ("Connection", "Upgrade".to_string()), ("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()))];
    if let Some(protocol) = protocol {
        headers.push(("Sec-WebSocket-Protocol", protocol));
    }
    if http::switch_protocols(&mut io, &headers).await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    match (chosen, stream_request) {
        (Plan::Command(version), command) => serve_command(ws, version, command, &context).await,
        (Plan::Tunnel, StreamRequest::PortForward { pod_id }) => serve_tunnel(ws, &context, &pod_id).await,
        (Plan::PortChannels(ports), StreamRequest::PortForward { pod_id }) => serve_port_channels(ws, ports, &context, &pod_id).await,
        _ => {}
    }
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut bytes = BytesMut::with_capacity(data.len() + 1);
    bytes.put_u8(channel);
    bytes.put_slice(data);
    Message::Binary(bytes.freeze())
}

fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

/// Sends queued messages; a close message is the last.
fn spawn_writer<S>(mut sink: S) -> (mpsc::Sender<Message>, JoinHandle<()>)
where
    S: futures_util::Sink<Message> + Unpin + Send + 'static,
{
    let (sender, mut queue) = mpsc::channel::<Message>(32);
    let task = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (sender, task)
}

/// Turns an output channel into messages on `channel`.
fn pump_channel(channel: u8, out: mpsc::Sender<Message>) -> (mpsc::Sender<Bytes>, JoinHandle<()>) {
    let (sink, mut source) = mpsc::channel::<Bytes>(16);
    let task = tokio::spawn(async move {
        while let Some(bytes) = source.recv().await {
            if out.send(framed(channel, &bytes)).await.is_err() {
                break;
            }
        }
    });
    (sink, task)
}

async fn serve_command<IO>(ws: WebSocketStream<IO>, version: Version, request: StreamRequest, context: &Context)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let stdio = match &request {
        StreamRequest::Exec { stdio, .. } | StreamRequest::Attach { stdio, .. } => *stdio,
        StreamRequest::PortForward { .. } => return,
    };
    let (sink, mut incoming) = ws.split();
    let (out, writer) = spawn_writer(sink);
    let (stdin_sender, stdin) = mpsc::unbounded_channel();
    let (resize_sender, resize) = mpsc::unbounded_channel();
    let (gone_sender, gone) = watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut stdin_sender = Some(stdin_sender);
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            match data.first() {
                Some(&STDIN) => {
                    if let Some(sender) = &stdin_sender {
                        let _ = sender.send(data.slice(1..));
                    }
                }
                Some(&RESIZE) => {
                    let _ = resize_sender.send(data.slice(1..));
                }
                Some(&CLOSE_SIGNAL) if version >= Version::V5 && data.get(1) == Some(&STDIN) => stdin_sender = None,
                _ => {}
            }
        }
        let _ = gone_sender.send(true);
    });
    let mut pumps = Vec::new();
    let mut output = |wanted: bool, channel: u8| {
        wanted.then(|| {
            let (sink, task) = pump_channel(channel, out.clone());
            pumps.push(task);
            sink
        })
    };
    let client = ClientSide {
        stdout: output(stdio.stdout, STDOUT),
        stderr: output(stdio.stderr && !stdio.tty, STDERR),
        stdin: stdio.stdin.then_some(stdin),
        resize: stdio.tty.then_some(resize),
        gone,
    };
    let outcome = remotecommand::run(context, request, client).await;
    for pump in pumps {
        let _ = pump.await;
    }
    let _ = out.send(framed(ERROR, &remotecommand::error_channel_bytes(&outcome, version))).await;
    let _ = out.send(normal_close()).await;
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    reader.abort();
}

/// SPDY carried in binary messages: bridged to an in-memory pipe that a SPDY session
/// reads and writes.
async fn serve_tunnel<IO>(ws: WebSocketStream<IO>, context: &Context, pod_id: &str)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (local, remote) = tokio::io::duplex(256 << 10);
    let (mut remote_reader, mut remote_writer) = tokio::io::split(remote);
    let (sink, mut incoming) = ws.split();
    let (out, writer) = spawn_writer(sink);
    let inbound = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(data) => {
                    if remote_writer.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = remote_writer.shutdown().await;
    });
    let outbound = tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 << 10];
        loop {
            match remote_reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    if out.send(Message::Binary(Bytes::copy_from_slice(&buffer[..count]))).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = out.send(normal_close()).await;
    });
    portforward::serve_spdy(Session::start(local, true), context, pod_id).await;
    inbound.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), outbound).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// The channel protocol: one connection per requested port.
async fn serve_port_channels<IO>(ws: WebSocketStream<IO>, ports: Vec<u16>, context: &Context, pod_id: &str)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let network = portforward::pod_network(context, pod_id);
    let (sink, mut incoming) = ws.split();
    let (out, writer) = spawn_writer(sink);
    let mut inputs = Vec::new();
    let mut connections = tokio::task::JoinSet::new();
    for (index, port) in ports.iter().enumerate() {
        let (data, error) = ((index * 2) as u8, (index * 2 + 1) as u8);
        let _ = out.send(framed(data, &port.to_le_bytes())).await;
        let _ = out.send(framed(error, &port.to_le_bytes())).await;
        let (input, source) = mpsc::unbounded_channel::<Bytes>();
        inputs.push(input);
        let (out, network, pod_id, port) = (out.clone(), network.clone(), pod_id.to_string(), port.to_string());
        connections.spawn(async move {
            match portforward::connect(&network, &pod_id, &port).await {
                Ok(connection) => {
                    let (reader, writer) = connection.into_split();
                    let up = tokio::spawn(portforward::upstream(source, writer));
                    let (sink, pump) = pump_channel(data, out);
                    copy_to_channel(reader, sink).await;
                    let _ = pump.await;
                    up.abort();
                }
                Err(message) => {
                    let _ = out.send(framed(error, message.as_bytes())).await;
                }
            }
        });
    }
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(Message::Binary(data))) = incoming.next().await {
            let channel = data.first().copied().unwrap_or(u8::MAX) as usize;
            if channel % 2 == 0 {
                if let Some(input) = inputs.get(channel / 2) {
                    let _ = input.send(data.slice(1..));
                }
            }
        }
    });
    tokio::select! {
        _ = async { while connections.join_next().await.is_some() {} } => {}
        _ = &mut reader => {}
    }
    reader.abort();
    let _ = out.send(normal_close()).await;
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

async fn copy_to_channel(mut reader: tokio::net::tcp::OwnedReadHalf, sink: mpsc::Sender<Bytes>) {
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(count) => {
                if sink.send(Bytes::copy_from_slice(&buffer[..count])).await.is_err() {
                    return;
                }
            }
        }
    }
}
