//! The CRI log mode: the shim writes the container's stdout and stderr to one file,
//! a line per entry: `<RFC 3339 nano time> <stream> <F|P> <content>`, `P` marking a
//! piece of a line longer than the buffer. The path comes from the bundle's
//! `io.berth.cri.log-path` annotation, and is opened beneath the pod's log directory
//! (`io.berth.cri.log-directory`) with `openat2(RESOLVE_BENEATH)`, so that neither
//! `..` nor a symlink leads the root shim to a file outside it. An Update whose
//! annotations hold `io.berth.cri.reopen-log` reopens the file (after the kubelet
//! rotated it). A log whose `io.berth.log-rotate-bytes` annotation names a size (berth's
//! private attach log) is rotated by the shim itself once it reaches that size: the
//! file is renamed to `<name>.1` (replacing the previous one) and a new one begun.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use crate::error::{ShimError, ShimResult};

pub const LOG_PATH_ANNOTATION: &str = "io.berth.cri.log-path";
pub const LOG_DIRECTORY_ANNOTATION: &str = "io.berth.cri.log-directory";
pub const REOPEN_ANNOTATION: &str = "io.berth.cri.reopen-log";
pub const ROTATE_BYTES_ANNOTATION: &str = "io.berth.log-rotate-bytes";
/// Longest line content written as one entry; longer lines are split into `P` entries.
pub const LINE_BUFFER: usize = 8192;

/// Where a container's log goes: a path of plain names beneath a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct LogTarget {
    pub directory: PathBuf,
    pub relative: PathBuf,
}

impl LogTarget {
    /// The log file `path` beneath `directory` (its parent when none is given).
    pub fn new(path: &Path, directory: Option<&Path>) -> ShimResult<LogTarget> {
        let directory = directory.or_else(|| path.parent()).unwrap_or(Path::new("/"));
        let relative = path.strip_prefix(directory).map_err(|_| outside(path, directory))?;
        let plain = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || relative.as_os_str().is_empty() {
            return Err(outside(path, directory));
        }
        Ok(LogTarget { directory: directory.to_path_buf(), relative: relative.to_path_buf() })
    }
}

fn outside(path: &Path, directory: &Path) -> ShimError {
    ShimError::Invalid(format!("log {} is not a file beneath {}", path.display(), directory.display()))
}

pub struct CriLog {
    target: LogTarget,
    file: Mutex<File>,
    /// The size at which the shim rotates the log itself (none: the kubelet does).
    rotate_at: Option<u64>,
}

/// Opens (creating) the directory `name` beneath `parent`, following no symlink.
fn open_subdirectory(parent: &OwnedFd, name: &std::ffi::OsStr) -> nix::Result<OwnedFd> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    match nix::sys::stat::mkdirat(Some(parent.as_raw_fd()), name, nix::sys::stat::Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(error) => return Err(error),
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    openat2(parent.as_raw_fd(), name, how).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the log for appending beneath its directory (made if missing, as are the
/// directories between): no component may be `..`, absolute, or a symlink leading out.
fn open(target: &LogTarget) -> ShimResult<File> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    let failed = |e: nix::errno::Errno| ShimError::io(format!("opening log {}", target.directory.join(&target.relative).display()), std::io::Error::from(e));
    let _ = std::fs::create_dir_all(&target.directory);
    let directory = File::open(&target.directory).map_err(|e| ShimError::io(format!("opening {}", target.directory.display()), e))?;
    let mut parent = OwnedFd::from(directory);
    let names: Vec<&std::ffi::OsStr> = target.relative.iter().collect();
    let (file_name, between) = names.split_last().ok_or_else(|| outside(&target.relative, &target.directory))?;
    for name in between {
        parent = open_subdirectory(&parent, name).map_err(failed)?;
    }
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(nix::sys::stat::Mode::from_bits_truncate(0o640))
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(parent.as_raw_fd(), *file_name, how).map_err(failed)?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

impl CriLog {
    pub fn open(target: LogTarget) -> ShimResult<CriLog> {
        let file = open(&target)?;
        Ok(CriLog { target, file: Mutex::new(file), rotate_at: None })
    }

    /// Rotates the log once it holds `bytes` (zero: never).
    pub fn rotating_at(self, bytes: u64) -> CriLog {
        CriLog { rotate_at: (bytes > 0).then_some(bytes), ..self }
    }

    /// Renames the full log to `<name>.1` and begins a new one. Called with the file
    /// locked, so no entry goes to the old file after the rename.
    fn rotate(&self, file: &mut File) {
        let path = self.target.directory.join(&self.target.relative);
        let mut previous = path.clone().into_os_string();
        previous.push(".1");
        if std::fs::rename(&path, &previous).is_ok() {
            if let Ok(fresh) = open(&self.target) {
                *file = fresh;
            }
        }
    }

    pub fn reopen(&self) -> ShimResult<()> {
        let file = open(&self.target)?;
        if let Ok(mut slot) = self.file.lock() {
            *slot = file;
        }
        Ok(())
    }

    /// Writes one entry in a single write, so entries of both streams never interleave.
    pub fn write_entry(&self, stream: &str, partial: bool, content: &[u8]) {
        let line = format_entry(&berth_runtime::state::now_rfc3339(), stream, partial, content);
        let Ok(mut file) = self.file.lock() else { return };
        let _ = file.write_all(&line);
        if let Some(limit) = self.rotate_at {
            if file.metadata().is_ok_and(|m| m.len() >= limit) {
                self.rotate(&mut file);
            }
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
pub const PARTIAL_LINE_DELAY: std::time::Duration = std::time::Duration::from_millis(200);
/// The same for a terminal's output: what a user types is echoed a key at a time, and
/// an attached client should see it at once.
pub const TERMINAL_PARTIAL_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Reads one stream's pipe until EOF, writing entries (an unfinished line after
/// `partial_delay`); drops `done` at the end.
pub async fn pump(pipe: OwnedFd, stream: &'static str, log: Arc<CriLog>, partial_delay: std::time::Duration, done: mpsc::Sender<()>) {
    let Ok(mut reader) = pipe::Receiver::from_owned_fd(pipe) else { return };
    let mut buffer = vec![0u8; LINE_BUFFER];
    let mut filled = 0;
    loop {
        let read = reader.read(&mut buffer[filled..]);
        let read = match filled {
            0 => read.await,
            _ => match tokio::time::timeout(partial_delay, read).await {
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
    fn log_targets_stay_beneath_their_directory() {
        let target = LogTarget::new(Path::new("/logs/pod/c/0.log"), Some(Path::new("/logs/pod"))).expect("inside");
        assert_eq!(target.relative, PathBuf::from("c/0.log"));
        assert!(LogTarget::new(Path::new("/etc/passwd"), Some(Path::new("/logs/pod"))).is_err());
        assert!(LogTarget::new(Path::new("/logs/pod/../../etc/passwd"), Some(Path::new("/logs/pod"))).is_err());
        assert!(LogTarget::new(Path::new("/logs/pod"), Some(Path::new("/logs/pod"))).is_err());
        assert_eq!(LogTarget::new(Path::new("/logs/x.log"), None).expect("parent").directory, PathBuf::from("/logs"));
    }

    #[test]
    fn a_symlink_beneath_the_directory_cannot_lead_out() {
        let base = std::env::temp_dir().join(format!("berth-crilog-{}", std::process::id()));
        let directory = base.join("pod");
        std::fs::create_dir_all(&directory).expect("mkdir");
        std::fs::write(base.join("outside"), b"").expect("outside file");
        std::os::unix::fs::symlink("../outside", directory.join("escape.log")).expect("symlink");
        std::os::unix::fs::symlink("..", directory.join("up")).expect("symlink");
        let escape = LogTarget::new(&directory.join("escape.log"), Some(&directory)).expect("plain names");
        assert!(CriLog::open(escape).is_err());
        let through = LogTarget::new(&directory.join("up/x.log"), Some(&directory)).expect("plain names");
        assert!(CriLog::open(through).is_err());
        assert!(!base.join("x.log").exists());
        let fine = LogTarget::new(&directory.join("c/0.log"), Some(&directory)).expect("plain names");
        let log = CriLog::open(fine).expect("a log beneath");
        log.write_entry("stdout", false, b"hello");
        assert!(std::fs::read_to_string(directory.join("c/0.log")).expect("log").ends_with(" stdout F hello\n"));
        std::fs::remove_dir_all(&base).expect("cleanup");
    }

    #[test]
    fn a_rotating_log_keeps_two_bounded_files() {
        let directory = std::env::temp_dir().join(format!("berth-crilog-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("mkdir");
        let target = LogTarget::new(&directory.join("attach.log"), None).expect("target");
        let log = CriLog::open(target).expect("open").rotating_at(1000);
        for n in 0..100 {
            log.write_entry("stdout", false, format!("line {n:03} {}", "x".repeat(40)).as_bytes());
        }
        let current = std::fs::read_to_string(directory.join("attach.log")).expect("log");
        let previous = std::fs::read_to_string(directory.join("attach.log.1")).expect("rotated log");
        assert!(current.len() < 1100 && previous.len() < 1100, "{} {}", current.len(), previous.len());
        assert!(current.ends_with(&format!("line 099 {}\n", "x".repeat(40))), "{current}");
        let names = std::fs::read_dir(&directory).expect("list").count();
        assert_eq!(names, 2);
        std::fs::remove_dir_all(&directory).expect("cleanup");
    }

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
