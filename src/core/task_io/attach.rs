//! Attaching to a running container: its output followed from the log the shim
//! writes (the CRI log, or berth's own rotated attach log for an interactive container
//! without one; a TTY's output is logged as `stdout`), its stdin through the FIFO it
//! was created with.
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{ProcessHandle, ProcessStdin};
use crate::core::*;

/// The container's stdin FIFO, made before its task is created when it asked for stdin.
pub(crate) fn container_stdin_path(bundle: &Path) -> PathBuf {
    bundle.join("stdin")
}

/// The size at which the shim rotates berth's own attach log (to `attach.log.1`), so
/// that it holds at most twice this.
pub const ATTACH_LOG_ROTATE_BYTES: u64 = 1 << 20;

/// Where the shim logs the container's output, which attach follows: the CRI log, or
/// for an interactive container (stdin) without one a log of berth's own in its bundle
/// (so that an attach has the output to show; bounded by rotation; removed with the
/// container).
pub(crate) fn output_log(record: &ContainerRecord) -> Option<PathBuf> {
    match (record.spec.log_path.is_empty(), record.spec.stdin) {
        (false, _) => Some(PathBuf::from(&record.spec.log_path)),
        (true, true) => Some(Path::new(&record.bundle).join("attach.log")),
        (true, false) => None,
    }
}

pub(crate) fn make_container_stdin(bundle: &Path) -> CoreResult<String> {
    let path = container_stdin_path(bundle);
    let _ = std::fs::remove_file(&path);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| CoreError::Internal(format!("mkfifo {}: {e}", path.display())))?;
    Ok(path.display().to_string())
}

/// One line of a CRI log: `<time> <stream> <F|P> <content>`.
fn parse_log_line(line: &[u8]) -> Option<(bool, &[u8], bool)> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let _time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or_default();
    Some((stream == b"stderr", content, tag == b"P"))
}

/// An attachment to a running container.
pub struct Attachment {
    pub handle: ProcessHandle,
    pub stdin: Option<ProcessStdin>,
    /// Output as it is logged: (from stderr, bytes). Ends once the container exited.
    pub output: mpsc::Receiver<(bool, Bytes)>,
    /// Set once the container exited.
    pub exited: tokio::sync::watch::Receiver<bool>,
}

/// Follows a CRI log from its present end until `exited` is set and the file is read.
/// A log that was rotated (renamed, a new one begun at its path) is read to its end,
/// then the new one from its start.
async fn follow_log(path: PathBuf, sink: mpsc::Sender<(bool, Bytes)>, exited: tokio::sync::watch::Receiver<bool>) {
    use tokio::io::AsyncSeekExt;
    let Ok(mut file) = tokio::fs::File::open(&path).await else { return };
    if file.seek(std::io::SeekFrom::End(0)).await.is_err() {
        return;
    }
    let mut pending = Vec::new();
    loop {
        let done = *exited.borrow();
        if !pass_on(&mut file, &mut pending, &sink).await {
            return;
        }
        if rotated(&file, &path).await {
            if !pass_on(&mut file, &mut pending, &sink).await {
                return;
            }
            if !read_missed_rotation(&file, &path, &mut pending, &sink).await {
                return;
            }
            match tokio::fs::File::open(&path).await {
                Ok(fresh) => file = fresh,
                Err(_) => return,
            }
            continue;
        }
        if done || sink.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After `drained` (rotated away and read to its end): when the log was rotated once
/// more meanwhile, the file in between is now `<path>.1`, and is read whole before the
/// current one. False once the client is gone.
async fn read_missed_rotation(drained: &tokio::fs::File, path: &Path, pending: &mut Vec<u8>, sink: &mpsc::Sender<(bool, Bytes)>) -> bool {
    let mut previous = path.as_os_str().to_owned();
    previous.push(".1");
    let Ok(mut between) = tokio::fs::File::open(&previous).await else { return true };
    if !same_file(drained, &between).await {
        return pass_on(&mut between, pending, sink).await;
    }
    true
}

async fn same_file(one: &tokio::fs::File, other: &tokio::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (one.metadata().await, other.metadata().await) {
        (Ok(one), Ok(other)) => one.ino() == other.ino() && one.dev() == other.dev(),
        _ => false,
    }
}

/// Whether the file at `path` is no longer the one open as `file`.
async fn rotated(file: &tokio::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, tokio::fs::metadata(path).await) {
        (Ok(open), Ok(named)) => open.ino() != named.ino() || open.dev() != named.dev(),
        _ => false,
    }
}

/// Reads what the log holds now and sends its complete entries, each run of entries
/// from one stream as one chunk (a line per send kept a follower of a fast writer far
/// behind the shim, which rotates on regardless); false once the client is gone.
async fn pass_on(file: &mut tokio::fs::File, pending: &mut Vec<u8>, sink: &mpsc::Sender<(bool, Bytes)>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        let count = file.read(&mut buffer).await.unwrap_or(0);
        if count == 0 {
            return true;
        }
        pending.extend_from_slice(&buffer[..count]);
        for (stderr, chunk) in complete_entries(pending) {
            if sink.send((stderr, Bytes::from(chunk))).await.is_err() {
                return false;
            }
        }
    }
}

/// Takes the complete log lines out of `pending`: their contents, consecutive ones of
/// one stream joined, in order.
fn complete_entries(pending: &mut Vec<u8>) -> Vec<(bool, Vec<u8>)> {
    let Some(last_end) = pending.iter().rposition(|b| *b == b'\n') else { return Vec::new() };
    let complete: Vec<u8> = pending.drain(..=last_end).collect();
    let mut chunks: Vec<(bool, Vec<u8>)> = Vec::new();
    for line in complete.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        let Some((stderr, content, partial)) = parse_log_line(line) else { continue };
        match chunks.last_mut() {
            Some((last_stderr, chunk)) if *last_stderr == stderr => chunk.extend_from_slice(content),
            _ => chunks.push((stderr, content.to_vec())),
        }
        if !partial {
            if let Some((_, chunk)) = chunks.last_mut() {
                chunk.push(b'\n');
            }
        }
    }
    chunks
}

impl Core {
    /// Attaches to the container's init: its logged output from now on (a TTY's output
    /// is logged by the shim as `stdout`), and its stdin when it was created with one and
    /// `stdin` is asked for. With `stdin_once`, the end of this client's input closes
    /// the container's stdin (for a TTY, after an end-of-file character).
    pub async fn attach(&self, namespace: &str, id: &str, stdin: bool) -> CoreResult<Attachment> {
        let (record, client) = self.running_task(namespace, id).await?;
        let Some(log) = output_log(&record) else {
            return Err(CoreError::FailedPrecondition(format!("container {} has neither a log nor stdin: no output to attach to", record.id)));
        };
        let handle = ProcessHandle::new(client, &record.id, "");
        let stdin = match stdin && record.spec.stdin {
            true => {
                let path = container_stdin_path(Path::new(&record.bundle)).display().to_string();
                Some(ProcessStdin::open(&path, handle.clone(), record.spec.stdin_once, record.spec.tty)?)
            }
            false => None,
        };
        let (set_exited, exited) = tokio::sync::watch::channel(false);
        let waiter = handle.clone();
        tokio::spawn(async move {
            let _ = waiter.wait().await;
            let _ = set_exited.send(true);
        });
        let (sink, output) = mpsc::channel(64);
        tokio::spawn(follow_log(log, sink, exited.clone()));
        Ok(Attachment { handle, stdin, output, exited })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_split_into_stream_and_content() {
        assert_eq!(parse_log_line(b"2024-01-01T00:00:00Z stdout F hello world"), Some((false, &b"hello world"[..], false)));
        assert_eq!(parse_log_line(b"t stderr P part"), Some((true, &b"part"[..], true)));
        assert_eq!(parse_log_line(b"t stdout F "), Some((false, &b""[..], false)));
        assert_eq!(parse_log_line(b"garbage"), None);
    }

    #[test]
    fn complete_entries_join_runs_of_one_stream_and_keep_the_rest() {
        let mut pending = b"t stdout F a\nt stdout P b\nt stdout F c\nt stderr F e\nt stdout F d\nt stdout F unfinish".to_vec();
        let chunks = complete_entries(&mut pending);
        assert_eq!(chunks, vec![(false, b"a\nbc\n".to_vec()), (true, b"e\n".to_vec()), (false, b"d\n".to_vec())]);
        assert_eq!(pending, b"t stdout F unfinish".to_vec());
        assert!(complete_entries(&mut pending).is_empty());
    }
}
