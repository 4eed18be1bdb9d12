//! A SPDY/3.1 connection over any byte stream: a reader task that turns frames into
//! streams (each peer-opened stream is answered with SYN_REPLY and handed out with its
//! headers and a channel of its data) and a writer task that owns the compression
//! state. Flow control: received data is acknowledged with WINDOW_UPDATE; sent data
//! keeps within the peer's windows once the peer shows that it does flow control (by a
//! SETTINGS initial window or a WINDOW_UPDATE); Kubernetes' spdystream does neither,
//! so a peer that never announces windows is not throttled.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};

use super::frame::{parse_head, Frame, HeaderCodec, Headers, FLAG_FIN, MAX_PAYLOAD, SETTINGS_INITIAL_WINDOW_SIZE};

/// Largest DATA payload sent in one frame.
const DATA_CHUNK: usize = 32 << 10;
/// The window SPDY/3.1 starts every stream with.
const DEFAULT_WINDOW: i64 = 64 << 10;

/// One stream: the headers it was opened with, its incoming data (the channel ends at
/// the peer's FIN or reset, or when the connection ends) and a writer.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub data: mpsc::UnboundedReceiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The value of a header (names are compared without regard to case).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

enum Out {
    Frame(Frame),
    Close,
}

#[derive(Default)]
struct WindowState {
    enforced: bool,
    initial: Option<i64>,
    streams: HashMap<u32, i64>,
}

/// The peer's receive windows, as far as it announced them.
#[derive(Default)]
struct Windows {
    state: Mutex<WindowState>,
    changed: Notify,
}

impl Windows {
    fn update(&self, apply: impl FnOnce(&mut WindowState)) {
        if let Ok(mut state) = self.state.lock() {
            apply(&mut state);
        }
        self.changed.notify_waiters();
    }

    /// How much of `wanted` may go now on `stream` (taken from its window), or `None`
    /// when the window is empty.
    fn take(&self, stream: u32, wanted: usize) -> Option<usize> {
        let Ok(mut state) = self.state.lock() else { return Some(wanted) };
        if !state.enforced {
            return Some(wanted);
        }
        let initial = state.initial.unwrap_or(DEFAULT_WINDOW);
        let window = state.streams.entry(stream).or_insert(initial);
        if *window <= 0 {
            return None;
        }
        let granted = wanted.min(*window as usize);
        *window -= granted as i64;
        Some(granted)
    }
}

/// Writes DATA on one stream; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::UnboundedSender<Out>,
    windows: Arc<Windows>,
}

impl StreamWriter {
    /// Sends `data`, in frames that fit the peer's window. Fails once the connection is gone.
    pub async fn write(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let wanted = data.len().min(DATA_CHUNK);
            let granted = loop {
                let changed = self.windows.changed.notified();
                if let Some(granted) = self.windows.take(self.id, wanted) {
                    break granted;
                }
                changed.await;
            };
            let frame = Frame::Data { stream_id: self.id, flags: 0, data: Bytes::copy_from_slice(&data[..granted]) };
            self.send(frame)?;
            data = &data[granted..];
        }
        Ok(())
    }

    /// Half-closes the stream from this side (an empty DATA frame with FIN).
    pub fn finish(&self) {
        let _ = self.send(Frame::Data { stream_id: self.id, flags: FLAG_FIN, data: Bytes::new() });
    }

    /// Resets the stream.
    pub fn reset(&self, status: u32) {
        let _ = self.send(Frame::RstStream { stream_id: self.id, status });
    }

    fn send(&self, frame: Frame) -> std::io::Result<()> {
        self.out.send(Out::Frame(frame)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the SPDY connection is closed"))
    }
}

type Routes = Arc<Mutex<HashMap<u32, mpsc::UnboundedSender<Bytes>>>>;

/// One SPDY connection. Streams the peer opens arrive on `accept`.
pub struct Session {
    incoming: mpsc::UnboundedReceiver<Stream>,
    out: mpsc::UnboundedSender<Out>,
    windows: Arc<Windows>,
    routes: Routes,
    next_id: u32,
    /// Becomes true when the reader has stopped (peer closed or the connection failed).
    pub closed: watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Session {
    /// Starts the tasks. A server numbers its own streams even, a client odd.
    pub fn start<IO>(io: IO, server: bool) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        let (out, outgoing) = mpsc::unbounded_channel();
        let (accepted, incoming) = mpsc::unbounded_channel();
        let windows = Arc::new(Windows::default());
        let routes: Routes = Default::default();
        let (done, closed) = watch::channel(false);
        tokio::spawn(write_frames(writer, outgoing));
        let reading = Reader { out: out.clone(), windows: windows.clone(), routes: routes.clone(), accepted };
        let reader = tokio::spawn(async move {
            reading.run(reader).await;
            let _ = done.send(true);
        });
        Session { incoming, out, windows, routes, next_id: if server { 2 } else { 1 }, closed, reader }
    }

    /// The next stream the peer opens; `None` once the connection has ended.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Opens a stream with `headers` (a client's SYN_STREAM).
    pub fn open(&mut self, headers: Headers) -> std::io::Result<Stream> {
        let id = self.next_id;
        self.next_id += 2;
        let (sender, data) = mpsc::unbounded_channel();
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(id, sender);
        }
        let writer = StreamWriter { id, out: self.out.clone(), windows: self.windows.clone() };
        writer.send(Frame::SynStream { stream_id: id, associated: 0, priority: 0, flags: 0, headers: headers.clone() })?;
        Ok(Stream { id, headers, data, writer })
    }

    /// Sends what is queued, then closes the connection for writing.
    pub fn close(&self) {
        let _ = self.out.send(Out::Close);
    }

    /// Resolves once the peer has closed the connection (or it failed).
    pub async fn wait_closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|done| *done).await;
    }
}

async fn write_frames<W: AsyncWrite>(writer: W, mut outgoing: mpsc::UnboundedReceiver<Out>) {
    tokio::pin!(writer);
    let mut codec = HeaderCodec::default();
    let mut buffer = Vec::with_capacity(64 << 10);
    while let Some(first) = outgoing.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        while let Some(item) = next.take() {
            match item {
                Out::Frame(frame) => buffer.extend_from_slice(&codec.encode(&frame)),
                Out::Close => closing = true,
            }
            if buffer.len() < (256 << 10) && !closing {
                next = outgoing.try_recv().ok();
            }
        }
        if writer.write_all(&buffer).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        buffer.clear();
        if closing {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

struct Reader {
    out: mpsc::UnboundedSender<Out>,
    windows: Arc<Windows>,
    routes: Routes,
    accepted: mpsc::UnboundedSender<Stream>,
}

impl Reader {
    async fn run<R: AsyncRead>(self, reader: R) {
        tokio::pin!(reader);
        let mut codec = HeaderCodec::default();
        loop {
            let mut head = [0u8; 8];
            if reader.read_exact(&mut head).await.is_err() {
                break;
            }
            let Ok(parsed) = parse_head(&head) else { break };
            if parsed.length > MAX_PAYLOAD {
                break;
            }
            let mut payload = vec![0u8; parsed.length];
            if reader.read_exact(&mut payload).await.is_err() {
                break;
            }
            match codec.decode(&parsed, Bytes::from(payload)) {
                Ok(frame) => {
                    if !self.handle(frame) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "dropping a SPDY connection");
                    break;
                }
            }
        }
        if let Ok(mut routes) = self.routes.lock() {
            routes.clear();
        }
        // Wake writers blocked on a window: the connection is over.
        self.windows.update(|state| state.enforced = false);
    }

    /// Applies one frame; false ends the connection.
    fn handle(&self, frame: Frame) -> bool {
        match frame {
            Frame::SynStream { stream_id, flags, headers, .. } => self.open(stream_id, flags, headers),
            Frame::Data { stream_id, flags, data } => self.data(stream_id, flags, data),
            Frame::RstStream { stream_id, .. } => self.end(stream_id),
            Frame::Headers { stream_id, flags, .. } | Frame::SynReply { stream_id, flags, .. } if flags & FLAG_FIN != 0 => self.end(stream_id),
            Frame::Ping { id } => {
                let _ = self.out.send(Out::Frame(Frame::Ping { id }));
            }
            Frame::Settings { entries } => {
                if let Some((_, value)) = entries.iter().find(|(id, _)| *id == SETTINGS_INITIAL_WINDOW_SIZE) {
                    let value = *value as i64;
                    self.windows.update(|state| {
                        state.enforced = true;
                        state.initial = Some(value);
                    });
                }
            }
            Frame::WindowUpdate { stream_id, delta } => self.windows.update(|state| {
                state.enforced = true;
                let initial = state.initial.unwrap_or(DEFAULT_WINDOW);
                *state.streams.entry(stream_id).or_insert(initial) += delta as i64;
            }),
            Frame::GoAway { .. } => return false,
            _ => {}
        }
        true
    }

    fn open(&self, stream_id: u32, flags: u8, headers: Headers) {
        let (sender, data) = mpsc::unbounded_channel();
        if flags & FLAG_FIN == 0 {
            if let Ok(mut routes) = self.routes.lock() {
                routes.insert(stream_id, sender);
            }
        }
        let _ = self.out.send(Out::Frame(Frame::SynReply { stream_id, flags: 0, headers: Vec::new() }));
        let writer = StreamWriter { id: stream_id, out: self.out.clone(), windows: self.windows.clone() };
        let _ = self.accepted.send(Stream { id: stream_id, headers, data, writer });
    }

    fn data(&self, stream_id: u32, flags: u8, data: Bytes) {
        let length = data.len() as u32;
        let route = self.routes.lock().ok().and_then(|routes| routes.get(&stream_id).cloned());
        if let Some(route) = route {
            if !data.is_empty() && route.send(data).is_ok() {
                let _ = self.out.send(Out::Frame(Frame::WindowUpdate { stream_id, delta: length }));
            }
        }
        if flags & FLAG_FIN != 0 {
            self.end(stream_id);
        }
    }

    fn end(&self, stream_id: u32) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&stream_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_and_server_exchange_data_and_fin() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut client = Session::start(a, false);
        let mut server = Session::start(b, true);
        let mut opened = client.open(vec![("streamtype".into(), "stdin".into())]).expect("open");
        let big = vec![7u8; 200 << 10];
        opened.writer.write(&big).await.expect("write");
        opened.writer.finish();
        let mut accepted = server.accept().await.expect("a stream");
        assert_eq!(accepted.header("StreamType"), Some("stdin"));
        let mut received = Vec::new();
        while let Some(chunk) = accepted.data.recv().await {
            received.extend_from_slice(&chunk);
        }
        assert_eq!(received.len(), big.len());
        accepted.writer.write(b"reply").await.expect("reply");
        accepted.writer.finish();
        let mut back = Vec::new();
        while let Some(chunk) = opened.data.recv().await {
            back.extend_from_slice(&chunk);
        }
        assert_eq!(back, b"reply");
        server.close();
        client.wait_closed().await;
    }

    #[tokio::test]
    async fn a_peer_announcing_windows_is_throttled_until_it_updates() {
        let windows = Windows::default();
        assert_eq!(windows.take(1, 100), Some(100));
        windows.update(|state| {
            state.enforced = true;
            state.initial = Some(10);
        });
        assert_eq!(windows.take(1, 100), Some(10));
        assert_eq!(windows.take(1, 100), None);
        windows.update(|state| *state.streams.entry(1).or_insert(0) += 5);
        assert_eq!(windows.take(1, 100), Some(5));
    }
}
