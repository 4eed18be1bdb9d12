//! The CRI log mode: the shim writes the container's stdout and stderr to one file,
//! a line per entry: `<RFC 3339 nano time> <stream> <F|P> <content>`, `P` marking a
//! piece of a line longer than the buffer. The path comes from the bundle's
//! `io.berth.cri.log-path` annotation; an Update whose annotations hold
//! `io.berth.cri.reopen-log` reopens the file (after the kubelet rotated it).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::error::{ShimError, ShimResult};

pub const LOG_PATH_ANNOTATION: &str = "io.berth.cri.log-path";
pub const REOPEN_ANNOTATION: &str = "io.berth.cri.reopen-log";
/// Longest line content written as one entry; longer lines are split into `P` entries.
pub const LINE_BUFFER: usize = 8192;

pub struct CriLog {
    path: PathBuf,
    file: Mutex<File>,
}

fn open(path: &Path) -> ShimResult<File> {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ShimError::io(format!("opening log {}", path.display()), e))
}

impl CriLog {
    pub fn open(path: &Path) -> ShimResult<CriLog> {
        Ok(CriLog { path: path.to_path_buf(), file: Mutex::new(open(path)?) })
    }

    pub fn reopen(&self) -> ShimResult<()> {
        let file = open(&self.path)?;
        if let Ok(mut slot) = self.file.lock() {
            *slot = file;
        }
        Ok(())
    }

    /// Writes one entry in a single write, so entries of both streams never interleave.
    pub fn write_entry(&self, stream: &str, partial: bool, content: &[u8]) {
        let line = format_entry(&berth_runtime::state::now_rfc3339(), stream, partial, content);
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(&line);
        }
    }
}

pub fn format_entry(time: &str, stream: &str, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(time.len() + stream.len() + content.len() + 5);
    line.extend_from_slice(time.as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.as_bytes());
    line.extend_from_slice(if partial { b" P " } else { b" F " });
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// Splits what is buffered into entries: every complete line, then, if the buffer is
/// full, its content as a partial entry. Returns how many bytes were consumed.
pub fn split_entries(buffer: &[u8], full: bool, mut emit: impl FnMut(bool, &[u8])) -> usize {
    let mut start = 0;
    while let Some(end) = buffer[start..].iter().position(|b| *b == b'\n') {
        emit(false, &buffer[start..start + end]);
        start += end + 1;
    }
    if full && start == 0 && !buffer.is_empty() {
        emit(true, buffer);
        return buffer.len();
    }
    start
}

/// How long the start of a line waits for its end before it is logged as a partial
/// entry (a prompt, `echo -n`), so that a reader of the log (attach) sees it.
const PARTIAL_LINE_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// Reads one stream's pipe until EOF, writing entries; drops `done` at the end.
pub async fn pump(pipe: OwnedFd, stream: &'static str, log: Arc<CriLog>, done: mpsc::Sender<()>) {
    let Ok(mut reader) = pipe::Receiver::from_owned_fd(pipe) else { return };
    let mut buffer = vec![0u8; LINE_BUFFER];
    let mut filled = 0;
    loop {
        let read = reader.read(&mut buffer[filled..]);
        let read = match filled {
            0 => read.await,
            _ => match tokio::time::timeout(PARTIAL_LINE_DELAY, read).await {
                Ok(read) => read,
                Err(_) => {
                    log.write_entry(stream, true, &buffer[..filled]);
                    filled = 0;
                    continue;
                }
            },
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        filled += n;
        let consumed = split_entries(&buffer[..filled], filled == LINE_BUFFER, |partial, content| {
            log.write_entry(stream, partial, content)
        });
        buffer.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
    if filled > 0 {
        log.write_entry(stream, false, &buffer[..filled]);
    }
    drop(done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_format() {
        let line = format_entry("2016-10-06T00:17:09.669794202Z", "stdout", false, b"message");
        assert_eq!(line, b"2016-10-06T00:17:09.669794202Z stdout F message\n");
        let line = format_entry("t", "stderr", true, b"abc");
        assert_eq!(line, b"t stderr P abc\n");
    }

    #[test]
    fn splitting_lines_and_partials() {
        let mut seen = Vec::new();
        let used = split_entries(b"one\ntwo\nthr", false, |p, c| seen.push((p, c.to_vec())));
        assert_eq!(used, 8);
        assert_eq!(seen, vec![(false, b"one".to_vec()), (false, b"two".to_vec())]);
        seen.clear();
        let used = split_entries(b"abcd", true, |p, c| seen.push((p, c.to_vec())));
        assert_eq!(used, 4);
        assert_eq!(seen, vec![(true, b"abcd".to_vec())]);
        seen.clear();
        assert_eq!(split_entries(b"a\nbcd", true, |p, c| seen.push((p, c.to_vec()))), 2);
    }
}
