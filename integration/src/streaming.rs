//! A SPDY/3.1 client for berth's streaming server, written to the Kubernetes
//! remote-command and port-forward protocols (over berth's own SPDY framing module,
//! whose wire format is unit-tested against the specification): upgrade a URL, open
//! the channel streams, collect what comes back. The server listens on 127.0.0.1 in
//! berthd's network namespace, so connections are made from inside it; an `https`
//! URL is reached over TLS, trusting the CA that [`trust_ca`] named.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use berth::streaming::spdy::session::{Session, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A connection to the streaming server, plain or TLS.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

static TLS: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();

/// Trusts the PEM certificate authority at `ca` for `https` streaming URLs.
pub fn trust_ca(ca: &Path) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a PEM certificate")).expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = TLS.set(tokio_rustls::TlsConnector::from(Arc::new(config)));
}

/// `(tls, port, path)` of a streaming URL `http[s]://127.0.0.1:PORT/PATH`.
pub fn split_url(url: &str) -> (bool, u16, String) {
    let (tls, rest) = match url.strip_prefix("https://127.0.0.1:") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://127.0.0.1:").unwrap_or_else(|| panic!("unexpected streaming URL {url}"))),
    };
    let (port, path) = rest.split_once('/').expect("a path");
    (tls, port.parse().expect("port"), format!("/{path}"))
}

/// Connects to the server of `url`, with TLS (verifying its certificate) for https.
pub async fn connect_url(netns: &str, url: &str) -> Box<dyn Connection> {
    let (tls, port, _) = split_url(url);
    let socket = connect(netns, port).await;
    if !tls {
        return Box::new(socket);
    }
    let connector = TLS.get().expect("trust_ca before an https URL");
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    Box::new(connector.connect(name, socket).await.unwrap_or_else(|e| panic!("TLS handshake with {url}: {e}")))
}

/// A TCP connection to 127.0.0.1:`port` inside the network namespace at `netns`.
pub async fn connect(netns: &str, port: u16) -> TcpStream {
    berth::core::port_forward::connect_in_netns(Some(netns.into()), port).await.unwrap_or_else(|e| panic!("connect to the streaming server: {e}"))
}

/// Sends an upgrade request; returns the status line and headers, and the connection.
pub async fn upgrade(netns: &str, url: &str, upgrade: &str, extra_headers: &[(&str, &str)]) -> (String, Box<dyn Connection>) {
    let (_, port, path) = split_url(url);
    let mut socket = connect_url(netns, url).await;
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n");
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.expect("send the request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.expect("read the answer") == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), socket)
}

/// Upgrades to SPDY with `protocol`; panics unless the server switched.
pub async fn spdy(netns: &str, url: &str, protocol: &str) -> Session {
    let (head, socket) = upgrade(netns, url, "SPDY/3.1", &[("X-Stream-Protocol-Version", protocol)]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
    assert!(head.to_ascii_lowercase().contains(&format!("x-stream-protocol-version: {protocol}")), "{head}");
    Session::start(socket, false)
}

/// Reads a stream to its end (with a deadline).
pub async fn read_all(stream: &mut Stream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let reading = async {
        while let Some(chunk) = stream.data.recv().await {
            bytes.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reading).await.expect("the stream ended in time");
    bytes
}

/// Reads a stream until `wanted` appears in what was read.
pub async fn read_until(stream: &mut Stream, wanted: &str) -> String {
    let mut bytes = Vec::new();
    let reading = async {
        while !String::from_utf8_lossy(&bytes).contains(wanted) {
            match stream.data.recv().await {
                Some(chunk) => bytes.extend_from_slice(&chunk),
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), reading).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A remote command's streams, by type.
pub struct Command {
    pub session: Session,
    pub streams: HashMap<&'static str, Stream>,
}

impl Command {
    /// Opens the `kinds` streams (`error` first, as client-go does).
    pub async fn open(netns: &str, url: &str, kinds: &[&'static str]) -> Command {
        let mut session = spdy(netns, url, "v4.channel.k8s.io").await;
        let mut streams = HashMap::new();
        for kind in kinds {
            let stream = session.open(vec![("streamtype".into(), kind.to_string())]).expect("open a stream");
            streams.insert(*kind, stream);
        }
        Command { session, streams }
    }

    pub fn stream(&mut self, kind: &str) -> &mut Stream {
        self.streams.get_mut(kind).unwrap_or_else(|| panic!("no {kind} stream"))
    }

    pub async fn send(&mut self, kind: &str, data: &[u8]) {
        self.stream(kind).writer.write(data).await.expect("write to a stream");
    }

    pub fn close(&mut self, kind: &str) {
        self.stream(kind).writer.finish();
    }

    /// stdout (if opened), stderr (if opened) and the error stream's Status.
    pub async fn finish(mut self) -> (String, String, serde_json::Value) {
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        let stdout = match self.streams.get_mut("stdout") {
            Some(stream) => text(read_all(stream).await),
            None => String::new(),
        };
        let stderr = match self.streams.get_mut("stderr") {
            Some(stream) => text(read_all(stream).await),
            None => String::new(),
        };
        let status = read_all(self.stream("error")).await;
        let status = serde_json::from_slice(&status).unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(&status)));
        self.session.close();
        (stdout, stderr, status)
    }
}

/// One forwarded connection over a port-forward session: sends `request`, returns the
/// bytes the pod answered and the error stream's message.
pub async fn forward_once(session: &mut Session, request_id: u32, port: u16, request: &[u8]) -> (String, String) {
    let headers = |kind: &str| vec![("streamtype".to_string(), kind.to_string()), ("port".into(), port.to_string()), ("requestid".into(), request_id.to_string())];
    let mut error = session.open(headers("error")).expect("error stream");
    error.writer.finish();
    let mut data = session.open(headers("data")).expect("data stream");
    data.writer.write(request).await.expect("send");
    data.writer.finish();
    let answer = String::from_utf8_lossy(&read_all(&mut data).await).into_owned();
    let message = String::from_utf8_lossy(&read_all(&mut error).await).into_owned();
    (answer, message)
}

/// GET / from 127.0.0.1:`port` in the namespace: the whole answer (empty when nothing
/// answers).
pub async fn http_get(netns: &str, port: u16) -> String {
    let Ok(mut socket) = berth::core::port_forward::connect_in_netns(Some(netns.into()), port).await else { return String::new() };
    if socket.write_all(b"GET / HTTP/1.0\r\n\r\n").await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}
