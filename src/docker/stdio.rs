//! The stdio berthd serves itself for a Docker container: a stdin FIFO (`-i`), kept
//! open by berthd so that attaches can feed it, and for TTY containers the terminal's
//! output FIFO, copied into the container's log and to every attached client.
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, Mutex};

use super::{DockerError, DockerResult, NAMESPACE};
use crate::core::events::{ContainerEvent, LifecycleEvent};
use crate::core::task_io::TaskIo;
use crate::core::{ContainerState, SharedCore};

/// One container's live stdio. Output events are `Some(bytes)`, then `None` at the
/// end of a run.
pub struct Console {
    pub dir: PathBuf,
    pub log: PathBuf,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin: Mutex<Option<pipe::Sender>>,
    pub output: broadcast::Sender<Option<Bytes>>,
}

fn make_fifo(path: &Path) -> DockerResult<()> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
        Err(error) => Err(DockerError::internal(format!("mkfifo {}: {error}", path.display()))),
    }
}

/// Bytes written into a pipe and not read yet (FIONREAD).
pub fn unread_bytes(fd: &impl AsRawFd) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which outlives the call.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut count) };
    if result < 0 { 0 } else { count as usize }
}

/// Waits (up to two seconds) until the reader took everything written to `fd`.
pub async fn wait_read(fd: &impl AsRawFd) {
    for _ in 0..200 {
        if unread_bytes(fd) == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

impl Console {
    /// Makes the console; with `open_stdin`, its stdin FIFO is made and held open now,
    /// so that input sent before the container starts waits in it.
    pub fn new(dir: PathBuf, log: PathBuf, tty: bool, open_stdin: bool) -> DockerResult<Console> {
        super::logs::create_private_dirs(&dir).map_err(|e| DockerError::internal(format!("creating {}: {e}", dir.display())))?;
        let (output, _) = broadcast::channel(256);
        let console = Console { dir, log, tty, open_stdin, stdin: Mutex::new(None), output };
        if open_stdin {
            let path = console.path("stdin");
            make_fifo(&path)?;
            let sender = pipe::OpenOptions::new().read_write(true).open_sender(&path).map_err(|e| DockerError::internal(format!("opening {}: {e}", path.display())))?;
            console.stdin.try_lock().map_err(|_| DockerError::internal("stdin busy"))?.replace(sender);
        }
        Ok(console)
    }

    /// Waits until the shim has read what was written to stdin.
    pub async fn wait_drained(&self) {
        if let Some(sender) = self.stdin.lock().await.as_ref() {
            wait_read(sender).await;
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes the FIFOs and readers for one run of the container `core_id`; a TTY's
    /// output is copied until that run ends.
    pub fn prepare_run(&self, core: &SharedCore, core_id: &str) -> DockerResult<TaskIo> {
        let mut io = TaskIo { terminal: self.tty, ..TaskIo::default() };
        if self.open_stdin {
            io.stdin = self.path("stdin").display().to_string();
        }
        if !self.tty {
            return Ok(io);
        }
        let path = self.path("stdout");
        make_fifo(&path)?;
        let receiver = pipe::OpenOptions::new().open_receiver(&path).map_err(|e| DockerError::internal(format!("opening {}: {e}", path.display())))?;
        let keeper = pipe::OpenOptions::new().open_sender(&path).map_err(|e| DockerError::internal(format!("opening {}: {e}", path.display())))?;
        let run = RunEnd { core: core.clone(), core_id: core_id.to_string(), events: core.events.subscribe() };
        tokio::spawn(copy_terminal(receiver, keeper, run, self.log.clone(), self.output.clone()));
        io.stdout = path.display().to_string();
        Ok(io)
    }

    /// Feeds the container's stdin from `input` until it ends.
    pub async fn feed_stdin(&self, mut input: impl tokio::io::AsyncRead + Unpin) {
        use tokio::io::AsyncWriteExt;
        let mut buffer = vec![0u8; 16 << 10];
        loop {
            let count = match input.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => count,
            };
            let mut stdin = self.stdin.lock().await;
            let Some(sender) = stdin.as_mut() else { break };
            if sender.write_all(&buffer[..count]).await.is_err() {
                break;
            }
        }
    }
}

/// The end of one run of a container: its exit event, or (should the event be
/// missed) a record that is no longer created or running.
pub struct RunEnd {
    pub core: SharedCore,
    pub core_id: String,
    pub events: broadcast::Receiver<ContainerEvent>,
}

impl RunEnd {
    pub async fn wait(&mut self) {
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Ok(event) if event.container_id == self.core_id && matches!(event.kind, LifecycleEvent::Stopped | LifecycleEvent::Deleted) => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                    let live = self.core.container(NAMESPACE, &self.core_id).is_ok_and(|r| matches!(r.state, ContainerState::Created | ContainerState::Running));
                    if !live {
                        return;
                    }
                }
            }
        }
    }
}

/// Copies a terminal's output into the log (as CRI entries, split at newlines) and
/// to the attached clients. `keeper` holds the FIFO open until the run ends (the shim
/// may open its end late); then the copy goes on until the shim closes its end.
async fn copy_terminal(mut receiver: pipe::Receiver, keeper: pipe::Sender, mut run: RunEnd, log: PathBuf, output: broadcast::Sender<Option<Bytes>>) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).ok();
    let mut buffer = vec![0u8; 16 << 10];
    let mut keeper = Some(keeper);
    loop {
        let count = tokio::select! {
            read = receiver.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(count) => count,
            },
            _ = run.wait(), if keeper.is_some() => {
                keeper = None;
                continue;
            }
        };
        let chunk = &buffer[..count];
        let _ = output.send(Some(Bytes::copy_from_slice(chunk)));
        if let Some(file) = file.as_mut() {
            for piece in chunk.split_inclusive(|b| *b == b'\n') {
                let full = piece.ends_with(b"\n");
                let content = piece.strip_suffix(b"\n").unwrap_or(piece);
                let _ = file.write_all(&super::logs::format_entry("stdout", !full, content));
            }
        }
    }
    drop(keeper);
    let _ = output.send(None);
}
