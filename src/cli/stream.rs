//! berthctl's streaming verbs: `exec -i/-t`, `attach` and `port-forward`, through the
//! URL berthd's streaming server hands out, over SPDY/3.1 as crictl and kubectl do.
use std::io::IsTerminal;
use std::os::fd::AsFd;

use berth::streaming::spdy::session::{Session, Stream, StreamWriter};
use k8s_cri::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{rpc_error, Clients};

const REMOTE_COMMAND: &str = "v4.channel.k8s.io";
const PORT_FORWARD: &str = "portforward.k8s.io";

/// Connects to a streaming URL and upgrades it to SPDY with `protocol`.
async fn upgrade(url: &str, protocol: &str) -> Result<Session, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("unsupported streaming URL {url} (berthctl speaks plain HTTP)"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut socket = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("connecting to {authority}: {e}"))?;
    let request = format!("POST /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("the streaming server refused: {}", head.trim()));
    }
    Ok(Session::start(socket, false))
}

/// The terminal in raw mode while it lives.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else { return RawTerminal(None) };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize the pointer refers to.
    let done = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (done == 0 && size.ws_col > 0).then_some((size.ws_col, size.ws_row))
}

async fn send_size(resize: &StreamWriter) {
    if let Some((width, height)) = terminal_size() {
        let _ = resize.write(format!("{{\"Width\":{width},\"Height\":{height}}}").as_bytes()).await;
    }
}

/// Copies a stream to stdout or stderr until it ends (a terminal write is short).
async fn drain(mut stream: Stream, to_stderr: bool) {
    use std::io::Write;
    while let Some(bytes) = stream.data.recv().await {
        let written = match to_stderr {
            true => std::io::stderr().write_all(&bytes).and_then(|_| std::io::stderr().flush()),
            false => std::io::stdout().write_all(&bytes).and_then(|_| std::io::stdout().flush()),
        };
        if written.is_err() {
            break;
        }
    }
}

/// Reads this process's stdin on a thread of its own, chunk by chunk, until its end.
fn read_stdin() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::Read;
    let (sender, chunks) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 16 << 10];
        while let Ok(count) = std::io::stdin().read(&mut buffer) {
            if count == 0 || sender.blocking_send(buffer[..count].to_vec()).is_err() {
                break;
            }
        }
    });
    chunks
}

/// Runs the remote-command streams of `url`: the exit code from the error stream.
async fn run_remote(url: &str, stdin: bool, tty: bool) -> Result<i32, String> {
    let mut session = upgrade(url, REMOTE_COMMAND).await?;
    let mut open = |kind: &str| session.open(vec![("streamtype".into(), kind.into())]).map_err(|e| e.to_string());
    let mut error = open("error")?;
    let input = if stdin { Some(open("stdin")?) } else { None };
    let stdout = open("stdout")?;
    let stderr = if tty { None } else { Some(open("stderr")?) };
    let resize = if tty { Some(open("resize")?) } else { None };
    let _raw = (tty && std::io::stdin().is_terminal()).then(RawTerminal::enter);
    if let Some(resize) = &resize {
        send_size(&resize.writer).await;
        let writer = resize.writer.clone();
        tokio::spawn(async move {
            let Ok(mut changes) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else { return };
            while changes.recv().await.is_some() {
                send_size(&writer).await;
            }
        });
    }
    if let Some(input) = input {
        let mut chunks = read_stdin();
        tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                if input.writer.write(&chunk).await.is_err() {
                    break;
                }
            }
            input.writer.finish();
        });
    }
    let errors = stderr.map(|stream| tokio::spawn(drain(stream, true)));
    drain(stdout, false).await;
    if let Some(errors) = errors {
        let _ = errors.await;
    }
    let mut status = Vec::new();
    while let Some(bytes) = error.data.recv().await {
        status.extend_from_slice(&bytes);
    }
    session.close();
    exit_code(&status)
}

/// The exit code a v4 Status carries.
fn exit_code(status: &[u8]) -> Result<i32, String> {
    if status.is_empty() {
        return Ok(0);
    }
    let status: serde_json::Value = serde_json::from_slice(status).map_err(|e| format!("unreadable status from the server: {e}"))?;
    if status["status"] == "Success" {
        return Ok(0);
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"].as_array().and_then(|causes| causes.iter().find(|c| c["reason"] == "ExitCode")).and_then(|c| c["message"].as_str()).and_then(|m| m.parse().ok());
        return code.ok_or_else(|| format!("no exit code in {status}"));
    }
    Err(status["message"].as_str().unwrap_or("the stream failed").to_string())
}

pub async fn exec(clients: &mut Clients, id: &str, command: Vec<String>, stdin: bool, tty: bool) -> Result<i32, String> {
    let request = cri::ExecRequest { container_id: id.to_string(), cmd: command, tty, stdin, stdout: true, stderr: !tty };
    let url = clients.runtime.exec(request).await.map_err(rpc_error)?.into_inner().url;
    run_remote(&url, stdin, tty).await
}

pub async fn attach(clients: &mut Clients, id: &str, stdin: bool, tty: bool) -> Result<i32, String> {
    let request = cri::AttachRequest { container_id: id.to_string(), stdin, tty, stdout: true, stderr: !tty };
    let url = clients.runtime.attach(request).await.map_err(rpc_error)?.into_inner().url;
    run_remote(&url, stdin, tty).await
}

/// `LOCAL:REMOTE` or `PORT` (the same on both sides).
fn parse_mapping(mapping: &str) -> Result<(u16, u16), String> {
    let parse = |port: &str| port.parse::<u16>().map_err(|_| format!("bad port {port:?} in {mapping:?}"));
    match mapping.split_once(':') {
        Some((local, remote)) => Ok((parse(local)?, parse(remote)?)),
        None => Ok((parse(mapping)?, parse(mapping)?)),
    }
}

/// Listens on 127.0.0.1 for each mapping and forwards every connection to the pod
/// over one SPDY session, until interrupted.
pub async fn port_forward(clients: &mut Clients, pod: &str, mappings: &[String]) -> Result<(), String> {
    let ports = mappings.iter().map(|m| parse_mapping(m)).collect::<Result<Vec<_>, _>>()?;
    let request = cri::PortForwardRequest { pod_sandbox_id: pod.to_string(), port: ports.iter().map(|(_, remote)| *remote as i32).collect() };
    let url = clients.runtime.port_forward(request).await.map_err(rpc_error)?.into_inner().url;
    let session = std::sync::Arc::new(tokio::sync::Mutex::new(upgrade(&url, PORT_FORWARD).await?));
    let mut listeners = Vec::new();
    for (local, remote) in ports {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", local)).await.map_err(|e| format!("listening on 127.0.0.1:{local}: {e}"))?;
        println!("Forwarding from 127.0.0.1:{local} -> {remote}");
        listeners.push(tokio::spawn(accept_loop(listener, remote, session.clone())));
    }
    let closed = session.lock().await.closed.clone();
    let mut closed = closed;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = closed.wait_for(|done| *done) => Err("the streaming server closed the connection".into()),
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, remote: u16, session: std::sync::Arc<tokio::sync::Mutex<Session>>) {
    let mut request_id = 0u32;
    while let Ok((socket, _)) = listener.accept().await {
        let headers = |kind: &str| vec![("streamtype".to_string(), kind.to_string()), ("port".into(), remote.to_string()), ("requestid".into(), request_id.to_string())];
        let opened = {
            let mut session = session.lock().await;
            session.open(headers("error")).and_then(|error| Ok((error, session.open(headers("data"))?)))
        };
        request_id += 1;
        let Ok((error, data)) = opened else { return };
        tokio::spawn(forward_connection(socket, error, data));
    }
}

async fn forward_connection(socket: tokio::net::TcpStream, mut error: Stream, mut data: Stream) {
    error.writer.finish();
    let (mut reader, mut writer) = socket.into_split();
    let sender = data.writer.clone();
    let upstream = tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 << 10];
        while let Ok(count) = reader.read(&mut buffer).await {
            if count == 0 || sender.write(&buffer[..count]).await.is_err() {
                break;
            }
        }
        sender.finish();
    });
    while let Some(bytes) = data.data.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    let mut message = Vec::new();
    while let Some(bytes) = error.data.recv().await {
        message.extend_from_slice(&bytes);
    }
    if !message.is_empty() {
        eprintln!("{}", String::from_utf8_lossy(&message));
    }
    upstream.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_and_statuses() {
        assert_eq!(parse_mapping("8080:80"), Ok((8080, 80)));
        assert_eq!(parse_mapping("53"), Ok((53, 53)));
        assert!(parse_mapping("x:1").is_err());
        assert_eq!(exit_code(br#"{"status":"Success"}"#), Ok(0));
        let failure = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#;
        assert_eq!(exit_code(failure), Ok(7));
        assert_eq!(exit_code(br#"{"status":"Failure","message":"boom"}"#), Err("boom".to_string()));
    }
}
