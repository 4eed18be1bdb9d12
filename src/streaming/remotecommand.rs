//! The remote-command session behind both transports: an exec or an attach wired to
//! the client's channels (stdin, stdout, stderr, resize), ending with an outcome that
//! the transport writes on the error channel (a Kubernetes `Status` from v4 on).
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Context, StreamRequest};
use crate::core::task_io::{ProcessHandle, ProcessStdin};

pub const V1: &str = "channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V5: &str = "v5.channel.k8s.io";

/// The remote-command protocol versions, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub fn parse(name: &str) -> Option<Version> {
        Some(match name {
            V1 => Version::V1,
            V2 => Version::V2,
            V3 => Version::V3,
            V4 => Version::V4,
            V5 => Version::V5,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => V1,
            Version::V2 => V2,
            Version::V3 => V3,
            Version::V4 => V4,
            Version::V5 => V5,
        }
    }

    /// The first of the client's offers (in its order) that is served here.
    pub fn negotiate(offers: &[String], websocket: bool) -> Option<Version> {
        offers.iter().filter_map(|offer| Version::parse(offer)).find(|version| !websocket || *version >= Version::V4)
    }
}

/// The client's side of the channels; absent ones were not opened.
pub struct ClientSide {
    pub stdin: Option<mpsc::UnboundedReceiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    pub resize: Option<mpsc::UnboundedReceiver<Bytes>>,
    /// Becomes true when the client disconnects.
    pub gone: watch::Receiver<bool>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Exited(i32),
    Failed(String),
}

/// What the error channel carries: for v4 and later a `Status` object, before that
/// a plain message (nothing on success).
pub fn error_channel_bytes(outcome: &Outcome, version: Version) -> Vec<u8> {
    if version < Version::V4 {
        return match outcome {
            Outcome::Exited(0) => Vec::new(),
            Outcome::Exited(code) => format!("command terminated with non-zero exit code: exit status {code}").into_bytes(),
            Outcome::Failed(message) => message.clone().into_bytes(),
        };
    }
    let status = match outcome {
        Outcome::Exited(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(message) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    };
    status.to_string().into_bytes()
}

async fn client_gone(mut gone: watch::Receiver<bool>) {
    loop {
        if *gone.borrow_and_update() {
            return;
        }
        if gone.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Runs an exec or attach request until the process ends or the client goes.
pub async fn run(context: &Context, request: StreamRequest, client: ClientSide) -> Outcome {
    match request {
        StreamRequest::Exec { container_id, command, stdio } => run_exec(context, &container_id, &command, stdio, client).await,
        StreamRequest::Attach { container_id, stdio } => run_attach(context, &container_id, stdio.stdin, client).await,
        StreamRequest::PortForward { .. } => Outcome::Failed("a port-forward token cannot run a command".into()),
    }
}

async fn run_exec(context: &Context, id: &str, command: &[String], stdio: crate::core::task_io::StdioWanted, mut client: ClientSide) -> Outcome {
    let mut exec = match context.core.exec_streamed(context.namespace, id, command, stdio).await {
        Ok(exec) => exec,
        Err(error) => return Outcome::Failed(error.to_string()),
    };
    let mut copies = Vec::new();
    if let Some(source) = exec.stdout.take() {
        copies.push(tokio::spawn(forward(source, client.stdout.take())));
    }
    if let Some(source) = exec.stderr.take() {
        copies.push(tokio::spawn(forward(source, client.stderr.take())));
    }
    let feeding = exec.stdin.take().map(|stdin| tokio::spawn(feed_stdin(stdin, client.stdin.take())));
    let resizing = client.resize.take().map(|resizes| tokio::spawn(apply_resizes(resizes, exec.handle.clone())));
    let outcome = tokio::select! {
        exit = exec.handle.wait() => exit.map(Outcome::Exited).unwrap_or_else(|e| Outcome::Failed(e.to_string())),
        _ = client_gone(client.gone.clone()) => {
            exec.handle.kill().await;
            let _ = exec.handle.wait().await;
            Outcome::Failed("the client disconnected".into())
        }
    };
    abort(feeding);
    abort(resizing);
    exec.finish().await;
    for copy in copies {
        let _ = copy.await;
    }
    outcome
}

async fn run_attach(context: &Context, id: &str, stdin: bool, mut client: ClientSide) -> Outcome {
    let mut attachment = match context.core.attach(context.namespace, id, stdin).await {
        Ok(attachment) => attachment,
        Err(error) => return Outcome::Failed(error.to_string()),
    };
    let (stdout, stderr) = (client.stdout.take(), client.stderr.take());
    let mut output = attachment.output;
    let copying = tokio::spawn(async move {
        while let Some((from_stderr, bytes)) = output.recv().await {
            let sink = if from_stderr { &stderr } else { &stdout };
            if let Some(sink) = sink {
                let _ = sink.send(bytes).await;
            }
        }
    });
    let feeding = attachment.stdin.take().map(|stdin| tokio::spawn(feed_stdin(stdin, client.stdin.take())));
    let resizing = client.resize.take().map(|resizes| tokio::spawn(apply_resizes(resizes, attachment.handle.clone())));
    let mut exited = attachment.exited.clone();
    let outcome = tokio::select! {
        _ = exited.wait_for(|done| *done) => Outcome::Exited(0),
        _ = client_gone(client.gone.clone()) => Outcome::Failed("the client disconnected".into()),
    };
    abort(resizing);
    match outcome {
        Outcome::Exited(_) => {
            let _ = copying.await;
            abort(feeding);
        }
        _ => {
            copying.abort();
            // A client that went away ends its input (which closes a stdin_once container's).
            if let Some(feeding) = feeding {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), feeding).await;
            }
        }
    }
    outcome
}

fn abort(task: Option<JoinHandle<()>>) {
    if let Some(task) = task {
        task.abort();
    }
}

/// Passes the process's output on; without a client channel it is read and dropped.
async fn forward(mut source: mpsc::Receiver<Bytes>, sink: Option<mpsc::Sender<Bytes>>) {
    while let Some(bytes) = source.recv().await {
        if let Some(sink) = &sink {
            let _ = sink.send(bytes).await;
        }
    }
}

/// Copies the client's input to the process until the client ends it, then ends it
/// for the process. A client without a stdin channel ends it at once.
async fn feed_stdin(mut stdin: ProcessStdin, source: Option<mpsc::UnboundedReceiver<Bytes>>) {
    if let Some(mut source) = source {
        while let Some(bytes) = source.recv().await {
            if stdin.write(&bytes).await.is_err() {
                break;
            }
        }
    }
    stdin.close().await;
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// Splits a byte stream of JSON objects into the complete sizes it holds, keeping an
/// incomplete tail in `pending` (bad JSON is dropped).
pub fn take_sizes(pending: &mut Vec<u8>) -> Vec<TerminalSize> {
    let mut sizes = Vec::new();
    loop {
        let mut values = serde_json::Deserializer::from_slice(pending).into_iter::<TerminalSize>();
        match values.next() {
            Some(Ok(size)) => {
                let used = values.byte_offset();
                sizes.push(size);
                pending.drain(..used);
            }
            Some(Err(error)) if error.is_eof() => return sizes,
            Some(Err(_)) => {
                pending.clear();
                return sizes;
            }
            None => {
                pending.clear();
                return sizes;
            }
        }
    }
}

async fn apply_resizes(mut source: mpsc::UnboundedReceiver<Bytes>, handle: ProcessHandle) {
    let mut pending = Vec::new();
    while let Some(bytes) = source.recv().await {
        pending.extend_from_slice(&bytes);
        for size in take_sizes(&mut pending) {
            if let Err(error) = handle.resize(size.width as u32, size.height as u32).await {
                tracing::debug!(%error, "resizing a terminal");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_statuses() {
        let success: serde_json::Value = serde_json::from_slice(&error_channel_bytes(&Outcome::Exited(0), Version::V4)).expect("json");
        assert_eq!(success["status"], "Success");
        let failure: serde_json::Value = serde_json::from_slice(&error_channel_bytes(&Outcome::Exited(3), Version::V5)).expect("json");
        assert_eq!(failure["reason"], "NonZeroExitCode");
        assert_eq!(failure["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failure["details"]["causes"][0]["message"], "3");
        assert!(error_channel_bytes(&Outcome::Exited(0), Version::V3).is_empty());
        assert_eq!(error_channel_bytes(&Outcome::Failed("boom".into()), Version::V2), b"boom");
    }

    #[test]
    fn negotiation_follows_the_client_order() {
        let offers = vec!["v5.channel.k8s.io".to_string(), V4.to_string(), V1.to_string()];
        assert_eq!(Version::negotiate(&offers, false), Some(Version::V5));
        assert_eq!(Version::negotiate(&[V3.to_string()], true), None);
        assert_eq!(Version::negotiate(&["base64.channel.k8s.io".to_string()], false), None);
    }

    #[test]
    fn resize_objects_are_split_from_a_stream() {
        let mut pending = br#"{"Width":80,"Height":24}{"Width":100,"Hei"#.to_vec();
        assert_eq!(take_sizes(&mut pending), vec![TerminalSize { width: 80, height: 24 }]);
        pending.extend_from_slice(br#"ght":50}
"#);
        assert_eq!(take_sizes(&mut pending), vec![TerminalSize { width: 100, height: 50 }]);
        pending.extend_from_slice(b"not json");
        assert!(take_sizes(&mut pending).is_empty());
        assert!(pending.is_empty());
    }
}
