//! The little HTTP/1.1 the streaming server needs: read one request head, answer it
//! with an error or a `101 Switching Protocols`, and keep the bytes that came after it.
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 << 10;
const MAX_HEADERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TooLarge => 431,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// Bytes read past the head (the client's first frames, if it did not wait).
    pub leftover: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every comma-separated value of every `name` header, trimmed.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// `(kind, token)` of a `/<kind>/<token>` path.
    pub fn route(&self) -> Option<(&str, &str)> {
        let mut parts = self.path.trim_start_matches('/').split('/');
        let kind = parts.next()?;
        let token = parts.next()?;
        (parts.next().is_none() && !token.is_empty()).then_some((kind, token))
    }

    pub fn is_websocket(&self) -> bool {
        self.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    pub fn is_spdy(&self) -> bool {
        self.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
    }

    /// Values of a query parameter.
    pub fn query_values(&self, name: &str) -> Vec<String> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
            .collect()
    }
}

/// Reads and parses one request head.
pub async fn read_request<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<Request, HttpError> {
    let mut buffer = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let count = io.read(&mut chunk).await?;
        if count == 0 {
            return Err(HttpError::Malformed("connection closed before the request head ended".into()));
        }
        buffer.extend_from_slice(&chunk[..count]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buffer) {
            Ok(httparse::Status::Complete(length)) => {
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                return Ok(Request {
                    method: parsed.method.unwrap_or_default().to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    headers: parsed.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect(),
                    leftover: buffer[length..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(HttpError::TooLarge),
            Err(error) => return Err(HttpError::Malformed(error.to_string())),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// Answers with `status` and a plain-text body, and closes.
pub async fn respond<IO: AsyncWrite + Unpin>(io: &mut IO, status: u16, message: &str) -> std::io::Result<()> {
    let body = format!("{message}\n");
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body.as_bytes()).await?;
    io.flush().await?;
    io.shutdown().await
}

/// Answers `101 Switching Protocols` with `headers`.
pub async fn switch_protocols<IO: AsyncWrite + Unpin>(io: &mut IO, headers: &[(&str, String)]) -> std::io::Result<()> {
    let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    io.write_all(head.as_bytes()).await?;
    io.flush().await
}

/// A connection whose first bytes were already read: they are read again first.
pub struct Prefixed<IO> {
    prefix: Vec<u8>,
    offset: usize,
    inner: IO,
}

impl<IO> Prefixed<IO> {
    pub fn new(prefix: Vec<u8>, inner: IO) -> Self {
        Prefixed { prefix, offset: 0, inner }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.offset < self.prefix.len() {
            let rest = &self.prefix[self.offset..];
            let count = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..count]);
            self.offset += count;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_a_head_and_keeps_what_follows() {
        let raw = b"POST /exec/abc?port=80&port=81 HTTP/1.1\r\nHost: x\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io, v2.channel.k8s.io\r\n\r\nFRAMES";
        let mut reader: &[u8] = raw;
        let request = read_request(&mut reader).await.expect("parses");
        assert_eq!(request.route(), Some(("exec", "abc")));
        assert!(request.is_spdy() && !request.is_websocket());
        assert_eq!(request.header_values("x-stream-protocol-version"), vec!["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"]);
        assert_eq!(request.query_values("port"), vec!["80", "81"]);
        assert_eq!(request.leftover, b"FRAMES");
    }

    #[tokio::test]
    async fn rejects_garbage_and_odd_paths() {
        let mut reader: &[u8] = b"\x00\x01 not http\r\n\r\n";
        assert!(read_request(&mut reader).await.is_err());
        let request = Request { path: "/exec/a/b".into(), ..Default::default() };
        assert_eq!(request.route(), None);
        let request = Request { path: "/exec/".into(), ..Default::default() };
        assert_eq!(request.route(), None);
    }
}
