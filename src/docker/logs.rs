//! Containers' logs, kept in the CRI log format (`<RFC 3339 time> <stream> <P|F>
//! <content>`, written by the shim, or by berthd for TTY containers) and served as
//! Docker's: stdout and stderr apart, tail, since, until, timestamps and follow.
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::hijack::{frame, Output};

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// One entry of a log file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub time: String,
    pub nanos: i64,
    pub stream: u8,
    /// The bytes as the process wrote them (a full line ends with its newline).
    pub content: Vec<u8>,
}

pub fn log_path(root: &Path, sandbox_id: &str) -> PathBuf {
    root.join("docker").join(sandbox_id).join("container.log")
}

pub fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok()?.timestamp_nanos_opt()
}

pub fn format_time(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub fn parse_entry(line: &[u8]) -> Option<Entry> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let stream = match parts.next()? {
        b"stdout" => STDOUT,
        b"stderr" => STDERR,
        _ => return None,
    };
    let partial = parts.next()? == b"P";
    let mut content = parts.next().unwrap_or_default().to_vec();
    if !partial {
        content.push(b'\n');
    }
    Some(Entry { nanos: parse_time(&time).unwrap_or(0), time, stream, content })
}

/// A CRI log line for `content` (without newlines), as the shim writes them.
pub fn format_entry(stream: &str, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut line = format!("{} {stream} {} ", format_time(crate::core::now_nanos()), if partial { "P" } else { "F" }).into_bytes();
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// What `docker logs` asked for.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub stdout: bool,
    pub stderr: bool,
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    pub since_nanos: i64,
    /// Zero: no limit.
    pub until_nanos: i64,
}

impl Selection {
    fn wants(&self, entry: &Entry) -> bool {
        let stream = (entry.stream == STDOUT && self.stdout) || (entry.stream == STDERR && self.stderr);
        stream && entry.nanos >= self.since_nanos && (self.until_nanos == 0 || entry.nanos <= self.until_nanos)
    }

    fn render(&self, tty: bool, entry: &Entry) -> Bytes {
        if !self.timestamps {
            return frame(tty, entry.stream, &entry.content);
        }
        let mut line = format!("{} ", entry.time).into_bytes();
        line.extend_from_slice(&entry.content);
        frame(tty, entry.stream, &line)
    }
}

/// Opens (making it if need be) a container's log; an open handle keeps reading after
/// the container's removal unlinks it.
pub fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        create_private_dirs(dir)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).append(true).create(true).mode(berth_runtime::private_fs::PRIVATE_FILE).open(path)
}

/// Makes `dir` and its ancestors up to the façade's own `docker` directory (under
/// berth's root or state) reachable by root only, as the rest of berth's directories.
pub fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    let top = dir.ancestors().position(|a| a.file_name().is_some_and(|n| n == "docker")).unwrap_or(0);
    let chain: Vec<&Path> = dir.ancestors().take(top + 1).collect();
    for ancestor in chain.into_iter().rev() {
        berth_runtime::private_fs::create_private_dir(ancestor)?;
    }
    Ok(())
}

/// Reads complete lines from `file` from `offset`; returns the entries and the new offset.
fn read_entries(file: &mut File, offset: u64) -> (Vec<Entry>, u64) {
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let complete = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    let entries = bytes[..complete].split(|b| *b == b'\n').filter_map(parse_entry).collect();
    (entries, offset + complete as u64)
}

pub fn file_size(file: &File) -> u64 {
    file.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Sends what the log holds now; returns the offset reached.
pub async fn send_existing(file: &mut File, tty: bool, selection: &Selection, output: &Output) -> u64 {
    let (entries, offset) = read_entries(file, 0);
    let mut wanted: Vec<&Entry> = entries.iter().filter(|e| selection.wants(e)).collect();
    if let Some(tail) = selection.tail {
        let keep = tail_start(&wanted, tail);
        wanted.drain(..keep);
    }
    for entry in wanted {
        if output.send(selection.render(tty, entry)).await.is_err() {
            break;
        }
    }
    offset
}

/// The index where the last `tail` lines begin.
fn tail_start(entries: &[&Entry], tail: usize) -> usize {
    if tail == 0 {
        return entries.len();
    }
    let mut lines = 0;
    for (index, entry) in entries.iter().enumerate().rev() {
        if entry.content.ends_with(b"\n") {
            lines += 1;
            if lines > tail {
                return index + 1;
            }
        }
    }
    0
}

/// Sends new entries from `offset` until `running` says the writer is done (then
/// what is left), or the client goes away.
pub async fn follow(file: &mut File, mut offset: u64, tty: bool, selection: &Selection, output: &Output, mut running: impl FnMut() -> bool) {
    loop {
        let finished = !running();
        let (entries, next) = read_entries(file, offset);
        offset = next;
        for entry in entries.iter().filter(|e| selection.wants(e)) {
            if output.send(selection.render(tty, entry)).await.is_err() {
                return;
            }
        }
        if finished || output.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_tail_counts_lines() {
        let full = parse_entry(b"2026-01-02T03:04:05.000000001Z stdout F hello").expect("entry");
        assert_eq!((full.stream, full.content.as_slice()), (STDOUT, b"hello\n".as_slice()));
        let part = parse_entry(b"2026-01-02T03:04:05.5Z stderr P par").expect("entry");
        assert_eq!((part.stream, part.content.as_slice()), (STDERR, b"par".as_slice()));
        assert!(parse_entry(b"garbage").is_none());
        let entries = [&full, &part, &full];
        assert_eq!(tail_start(&entries, 1), 1);
        assert_eq!(tail_start(&entries, 0), 3);
        assert_eq!(tail_start(&entries, 5), 0);
    }
}
