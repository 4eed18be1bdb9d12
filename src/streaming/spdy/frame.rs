//! SPDY/3.1 frames: their binary layout, and the zlib header-block compression with
//! the preset dictionary (one compression context per direction for the connection).
use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::dictionary;

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
/// SETTINGS id of the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;
/// Largest frame payload accepted (the 24-bit length field allows 16 MiB).
pub const MAX_PAYLOAD: usize = 1 << 24;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Header names (lower case) and values, in order.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    SynStream { stream_id: u32, associated: u32, priority: u8, flags: u8, headers: Headers },
    SynReply { stream_id: u32, flags: u8, headers: Headers },
    RstStream { stream_id: u32, status: u32 },
    Settings { entries: Vec<(u32, u32)> },
    Ping { id: u32 },
    GoAway { last_stream: u32, status: u32 },
    Headers { stream_id: u32, flags: u8, headers: Headers },
    WindowUpdate { stream_id: u32, delta: u32 },
    Data { stream_id: u32, flags: u8, data: Bytes },
    /// A control frame of a type this side does not handle (ignored, as the spec says).
    Other { kind: u16 },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("SPDY frame too short for its type")]
    Truncated,
    #[error("SPDY version {0} is not 3")]
    Version(u16),
    #[error("SPDY header block: {0}")]
    HeaderBlock(String),
}

/// The fixed 8-byte frame header: what kind, and how long the payload is.
pub struct FrameHead {
    control: bool,
    kind: u16,
    stream_id: u32,
    pub flags: u8,
    pub length: usize,
}

pub fn parse_head(head: &[u8; 8]) -> Result<FrameHead, FrameError> {
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let control = first & 0x8000_0000 != 0;
    let (kind, stream_id) = if control {
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        ((first & 0xffff) as u16, 0)
    } else {
        (0, first & 0x7fff_ffff)
    };
    Ok(FrameHead { control, kind, stream_id, flags: head[4], length })
}

/// Header compression state of one connection.
pub struct HeaderCodec {
    deflate: Compress,
    inflate: Decompress,
    dictionary: Vec<u8>,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        let dictionary = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        // A fresh stream always accepts a dictionary; the error cannot occur here.
        let _ = deflate.set_dictionary(&dictionary);
        HeaderCodec { deflate, inflate: Decompress::new(true), dictionary }
    }
}

impl HeaderCodec {
    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = BytesMut::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.put_slice(name.as_bytes());
            plain.put_u32(value.len() as u32);
            plain.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input: &[u8] = &plain;
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            // Errors are impossible with a valid state and output room.
            let _ = self.deflate.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    fn decompress(&mut self, mut input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            out.reserve(1024);
            let before = self.inflate.total_in();
            match self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(Status::Ok) | Ok(Status::BufError) | Ok(Status::StreamEnd) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&self.dictionary).map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
                }
                Err(error) => return Err(FrameError::HeaderBlock(error.to_string())),
            }
            input = &input[(self.inflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn read_headers(&mut self, block: &[u8]) -> Result<Headers, FrameError> {
        let plain = self.decompress(block)?;
        let mut buf: &[u8] = &plain;
        let count = take_u32(&mut buf)?;
        let mut headers = Vec::new();
        for _ in 0..count {
            let name = take_string(&mut buf)?;
            let value = take_string(&mut buf)?;
            headers.push((name.to_ascii_lowercase(), value));
        }
        Ok(headers)
    }

    /// Decodes one frame whose head was read and whose payload follows.
    pub fn decode(&mut self, head: &FrameHead, payload: Bytes) -> Result<Frame, FrameError> {
        if !head.control {
            return Ok(Frame::Data { stream_id: head.stream_id, flags: head.flags, data: payload });
        }
        let mut buf: &[u8] = &payload;
        let flags = head.flags;
        Ok(match head.kind {
            TYPE_SYN_STREAM => {
                let stream_id = take_u32(&mut buf)? & 0x7fff_ffff;
                let associated = take_u32(&mut buf)? & 0x7fff_ffff;
                let priority = take_u16(&mut buf)?.to_be_bytes()[0] >> 5;
                Frame::SynStream { stream_id, associated, priority, flags, headers: self.read_headers(buf)? }
            }
            TYPE_SYN_REPLY => {
                let stream_id = take_u32(&mut buf)? & 0x7fff_ffff;
                Frame::SynReply { stream_id, flags, headers: self.read_headers(buf)? }
            }
            TYPE_HEADERS => {
                let stream_id = take_u32(&mut buf)? & 0x7fff_ffff;
                Frame::Headers { stream_id, flags, headers: self.read_headers(buf)? }
            }
            TYPE_RST_STREAM => Frame::RstStream { stream_id: take_u32(&mut buf)? & 0x7fff_ffff, status: take_u32(&mut buf)? },
            TYPE_SETTINGS => {
                let count = take_u32(&mut buf)?;
                let mut entries = Vec::new();
                for _ in 0..count {
                    let id = take_u32(&mut buf)? & 0x00ff_ffff;
                    entries.push((id, take_u32(&mut buf)?));
                }
                Frame::Settings { entries }
            }
            TYPE_PING => Frame::Ping { id: take_u32(&mut buf)? },
            TYPE_GOAWAY => Frame::GoAway { last_stream: take_u32(&mut buf)? & 0x7fff_ffff, status: take_u32(&mut buf).unwrap_or(0) },
            TYPE_WINDOW_UPDATE => Frame::WindowUpdate { stream_id: take_u32(&mut buf)? & 0x7fff_ffff, delta: take_u32(&mut buf)? & 0x7fff_ffff },
            kind => Frame::Other { kind },
        })
    }

    /// Encodes a frame, head and payload.
    pub fn encode(&mut self, frame: &Frame) -> Bytes {
        let mut payload = BytesMut::new();
        let (kind, flags) = match frame {
            Frame::Data { stream_id, flags, data } => {
                let mut out = BytesMut::with_capacity(8 + data.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(((*flags as u32) << 24) | data.len() as u32);
                out.put_slice(data);
                return out.freeze();
            }
            Frame::SynStream { stream_id, associated, priority, flags, headers } => {
                payload.put_u32(*stream_id);
                payload.put_u32(*associated);
                payload.put_u16((*priority as u16 & 0x7) << 13);
                payload.put_slice(&self.compress(headers));
                (TYPE_SYN_STREAM, *flags)
            }
            Frame::SynReply { stream_id, flags, headers } => {
                payload.put_u32(*stream_id);
                payload.put_slice(&self.compress(headers));
                (TYPE_SYN_REPLY, *flags)
            }
            Frame::Headers { stream_id, flags, headers } => {
                payload.put_u32(*stream_id);
                payload.put_slice(&self.compress(headers));
                (TYPE_HEADERS, *flags)
            }
            Frame::RstStream { stream_id, status } => {
                payload.put_u32(*stream_id);
                payload.put_u32(*status);
                (TYPE_RST_STREAM, 0)
            }
            Frame::Settings { entries } => {
                payload.put_u32(entries.len() as u32);
                for (id, value) in entries {
                    payload.put_u32(id & 0x00ff_ffff);
                    payload.put_u32(*value);
                }
                (TYPE_SETTINGS, 0)
            }
            Frame::Ping { id } => {
                payload.put_u32(*id);
                (TYPE_PING, 0)
            }
            Frame::GoAway { last_stream, status } => {
                payload.put_u32(*last_stream);
                payload.put_u32(*status);
                (TYPE_GOAWAY, 0)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                payload.put_u32(*stream_id);
                payload.put_u32(*delta);
                (TYPE_WINDOW_UPDATE, 0)
            }
            Frame::Other { kind } => (*kind, 0),
        };
        let mut out = BytesMut::with_capacity(8 + payload.len());
        out.put_u32(0x8000_0000 | ((VERSION as u32) << 16) | kind as u32);
        out.put_u32(((flags as u32) << 24) | payload.len() as u32);
        out.put_slice(&payload);
        out.freeze()
    }
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, FrameError> {
    if buf.len() < 4 {
        return Err(FrameError::Truncated);
    }
    Ok(buf.get_u32())
}

fn take_u16(buf: &mut &[u8]) -> Result<u16, FrameError> {
    if buf.len() < 2 {
        return Err(FrameError::Truncated);
    }
    Ok(buf.get_u16())
}

fn take_string(buf: &mut &[u8]) -> Result<String, FrameError> {
    let length = take_u32(buf)? as usize;
    if buf.len() < length {
        return Err(FrameError::Truncated);
    }
    let text = String::from_utf8_lossy(&buf[..length]).into_owned();
    buf.advance(length);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(sender: &mut HeaderCodec, receiver: &mut HeaderCodec, frame: Frame) -> Frame {
        let bytes = sender.encode(&frame);
        let head: [u8; 8] = bytes[..8].try_into().expect("head");
        let head = parse_head(&head).expect("head parses");
        assert_eq!(head.length, bytes.len() - 8);
        receiver.decode(&head, bytes.slice(8..)).expect("decodes")
    }

    #[test]
    fn dictionary_is_the_specs() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        // The Adler-32 that SPDY/3 zlib streams carry as their dictionary id.
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for byte in &dictionary {
            a = (a + *byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn frames_survive_a_round_trip_with_shared_compression() {
        let (mut client, mut server) = (HeaderCodec::default(), HeaderCodec::default());
        let headers = vec![("streamtype".to_string(), "stdout".to_string()), ("port".into(), "80".into())];
        let frames = vec![
            Frame::SynStream { stream_id: 1, associated: 0, priority: 3, flags: 0, headers: headers.clone() },
            Frame::SynStream { stream_id: 3, associated: 0, priority: 0, flags: FLAG_FIN, headers: headers.clone() },
            Frame::SynReply { stream_id: 1, flags: 0, headers: vec![] },
            Frame::Data { stream_id: 1, flags: FLAG_FIN, data: Bytes::from_static(b"hello") },
            Frame::RstStream { stream_id: 3, status: RST_CANCEL },
            Frame::Settings { entries: vec![(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)] },
            Frame::Ping { id: 7 },
            Frame::WindowUpdate { stream_id: 1, delta: 5 },
            Frame::GoAway { last_stream: 3, status: 0 },
            Frame::Headers { stream_id: 1, flags: 0, headers },
        ];
        for frame in frames {
            assert_eq!(round_trip(&mut client, &mut server, frame.clone()), frame);
        }
    }

    #[test]
    fn rejects_other_versions_and_short_frames() {
        let head = [0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0];
        assert!(matches!(parse_head(&head), Err(FrameError::Version(2))));
        let head = parse_head(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 2]).expect("head");
        assert!(matches!(HeaderCodec::default().decode(&head, Bytes::from_static(&[0, 1])), Err(FrameError::Truncated)));
    }

    #[test]
    fn garbage_header_block_is_an_error() {
        let mut codec = HeaderCodec::default();
        let head = parse_head(&[0x80, 0x03, 0x00, 0x02, 0, 0, 0, 9]).expect("head");
        let payload = Bytes::from_static(&[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0x00]);
        assert!(codec.decode(&head, payload).is_err());
    }
}
