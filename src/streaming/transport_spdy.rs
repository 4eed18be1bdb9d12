//! The SPDY/3.1 transport: the upgrade handshake with `X-Stream-Protocol-Version`
//! negotiation, then remote-command streams (one SPDY stream per channel, named by
//! its `streamType` header) or port forwarding.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::{self, Request};
use super::remotecommand::{self, ClientSide, Version};
use super::spdy::session::{Session, Stream, StreamWriter};
use super::{portforward, Context, StreamRequest};

const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
/// How long the client may take to open the streams it asked for.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve<IO>(mut io: IO, request: Request, stream_request: StreamRequest, context: Arc<Context>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let offers = request.header_values(PROTOCOL_HEADER);
    let protocol = match &stream_request {
        StreamRequest::PortForward { .. } => offers.iter().find(|offer| *offer == portforward::PROTOCOL).cloned(),
        _ if offers.is_empty() => Some(remotecommand::V1.to_string()),
        _ => Version::negotiate(&offers, false).map(|version| version.name().to_string()),
    };
    let Some(protocol) = protocol else {
        let message = format!("unable to upgrade: unable to negotiate protocol: client supports {offers:?}");
        let _ = http::respond(&mut io, 403, &message).await;
        return;
    };
    let headers = [("Connection", "Upgrade".to_string()), ("Upgrade", "SPDY/3.1".to_string()), (PROTOCOL_HEADER, protocol.clone())];
    if http::switch_protocols(&mut io, &headers).await.is_err() {
        return;
    }
    let session = Session::start(io, true);
    match stream_request {
        StreamRequest::PortForward { pod_id } => portforward::serve_spdy(session, &context, &pod_id).await,
        command => {
            let version = Version::parse(&protocol).unwrap_or(Version::V1);
            serve_command(session, version, command, &context).await
        }
    }
}

/// The stream types the client will open for `request`.
fn expected_streams(request: &StreamRequest, version: Version) -> Vec<&'static str> {
    let stdio = match request {
        StreamRequest::Exec { stdio, .. } | StreamRequest::Attach { stdio, .. } => *stdio,
        StreamRequest::PortForward { .. } => return Vec::new(),
    };
    let mut expected = vec!["error"];
    if stdio.stdin {
        expected.push("stdin");
    }
    if stdio.stdout {
        expected.push("stdout");
    }
    if stdio.stderr && !stdio.tty {
        expected.push("stderr");
    }
    if stdio.tty && version >= Version::V3 {
        expected.push("resize");
    }
    expected
}

/// Waits for the client's streams: all expected ones, or whatever came in time.
async fn gather_streams(session: &mut Session, expected: &[&str]) -> HashMap<String, Stream> {
    let mut streams = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !expected.iter().all(|kind| streams.contains_key(*kind)) {
        match tokio::time::timeout_at(deadline, session.accept()).await {
            Ok(Some(stream)) => {
                let kind = stream.header("streamtype").unwrap_or_default().to_string();
                streams.insert(kind, stream);
            }
            _ => break,
        }
    }
    streams
}

/// Writes what arrives on a channel to a stream, then half-closes it.
fn pump_out(writer: StreamWriter) -> (mpsc::Sender<Bytes>, JoinHandle<()>) {
    let (sink, mut source) = mpsc::channel::<Bytes>(16);
    let task = tokio::spawn(async move {
        while let Some(bytes) = source.recv().await {
            if writer.write(&bytes).await.is_err() {
                break;
            }
        }
        writer.finish();
    });
    (sink, task)
}

async fn serve_command(mut session: Session, version: Version, request: StreamRequest, context: &Context) {
    let mut streams = gather_streams(&mut session, &expected_streams(&request, version)).await;
    let Some(error) = streams.remove("error") else {
        session.close();
        return;
    };
    let mut pumps = Vec::new();
    let mut output = |kind: &str| {
        streams.get(kind).map(|stream| {
            let (sink, task) = pump_out(stream.writer.clone());
            pumps.push(task);
            sink
        })
    };
    let (stdout, stderr) = (output("stdout"), output("stderr"));
    let client = ClientSide {
        stdin: streams.remove("stdin").map(|stream| stream.data),
        stdout,
        stderr,
        resize: streams.remove("resize").map(|stream| stream.data),
        gone: session.closed.clone(),
    };
    let outcome = remotecommand::run(context, request, client).await;
    for pump in pumps {
        let _ = pump.await;
    }
    let status = remotecommand::error_channel_bytes(&outcome, version);
    if !status.is_empty() {
        let _ = error.writer.write(&status).await;
    }
    error.writer.finish();
    session.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), session.wait_closed()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::task_io::StdioWanted;

    #[test]
    fn expected_streams_follow_the_request() {
        let exec = |stdio| StreamRequest::Exec { container_id: "c".into(), command: vec!["true".into()], stdio };
        let plain = StdioWanted { stdin: true, stdout: true, stderr: true, tty: false };
        assert_eq!(expected_streams(&exec(plain), Version::V4), vec!["error", "stdin", "stdout", "stderr"]);
        let tty = StdioWanted { stdin: true, stdout: true, stderr: true, tty: true };
        assert_eq!(expected_streams(&exec(tty), Version::V4), vec!["error", "stdin", "stdout", "resize"]);
        assert_eq!(expected_streams(&exec(tty), Version::V2), vec!["error", "stdin", "stdout"]);
    }
}
