//! Interactive processes for the streaming front door: a streamed exec (stdio through
//! FIFOs the shim opens, optionally on a pty), attaching to a running container (its
//! output followed from its CRI log, its stdin through the FIFO it was created with),
//! and TCP connections into a pod's network namespace for port forwarding.
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use containerd_shim_protos::api::{CloseIORequest, DeleteRequest, ExecProcessRequest, KillRequest, ResizePtyRequest, StartRequest, WaitRequest};
use containerd_shim_protos::shim_async::TaskClient;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::exec::{process_spec, read_fifo, release_reader, ExecFifos};
use super::*;
use crate::task::context;

/// Which stdio a streamed process gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdioWanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A process in a shim: the container's init (empty exec id) or an exec.
#[derive(Clone)]
pub struct ProcessHandle {
    client: TaskClient,
    container_id: String,
    exec_id: String,
}

impl ProcessHandle {
    pub async fn resize(&self, width: u32, height: u32) -> CoreResult<()> {
        let request = ResizePtyRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), width, height, ..Default::default() };
        self.client.resize_pty(context(), &request).await?;
        Ok(())
    }

    /// Tells the shim to close the process's stdin.
    pub async fn close_stdin(&self) -> CoreResult<()> {
        let request = CloseIORequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), stdin: true, ..Default::default() };
        self.client.close_io(context(), &request).await?;
        Ok(())
    }

    pub async fn kill(&self) {
        let request = KillRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), signal: libc::SIGKILL as u32, ..Default::default() };
        let _ = self.client.kill(context(), &request).await;
    }

    /// Waits for the process to exit: its exit status.
    pub async fn wait(&self) -> CoreResult<i32> {
        let request = WaitRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), ..Default::default() };
        Ok(self.client.wait(ttrpc::context::Context::default(), &request).await?.exit_status as i32)
    }
}

/// The writing end of a process's stdin FIFO.
pub struct ProcessStdin {
    writer: pipe::Sender,
    handle: ProcessHandle,
    /// Whether ending this stdin closes the process's stdin (an exec, or a container
    /// with `stdin_once`); otherwise only this client's input ends.
    closes_process: bool,
    /// Whether the process reads a terminal: closing its stdin then also sends the
    /// terminal's end-of-file character, since a pty has no end of its own.
    terminal: bool,
}

/// The end-of-file character of a terminal in its default settings (`^D`).
const TERMINAL_EOF: u8 = 0x04;

impl ProcessStdin {
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(data).await
    }

    /// Ends this input: once the shim has read what is in the FIFO, the process's stdin
    /// is closed (if this input owns it).
    pub async fn close(mut self) {
        if !self.closes_process {
            return;
        }
        if self.terminal {
            let _ = self.writer.write_all(&[TERMINAL_EOF]).await;
        }
        for _ in 0..200 {
            if fifo_pending(&self.writer) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.handle.close_stdin().await;
    }
}

/// Bytes still unread in a FIFO.
fn fifo_pending(writer: &pipe::Sender) -> i32 {
    use std::os::fd::AsRawFd;
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    if unsafe { libc::ioctl(writer.as_raw_fd(), libc::FIONREAD, &mut pending) } < 0 {
        return 0;
    }
    pending
}

fn open_stdin(path: &str, handle: ProcessHandle, closes_process: bool, terminal: bool) -> CoreResult<ProcessStdin> {
    let writer = pipe::OpenOptions::new().read_write(true).open_sender(path).map_err(io_error(format!("opening {path}")))?;
    Ok(ProcessStdin { writer, handle, closes_process, terminal })
}

/// A streamed exec: take `stdin`, `stdout` and `stderr`, then `wait`, then `finish`.
pub struct StreamedExec {
    pub handle: ProcessHandle,
    pub stdin: Option<ProcessStdin>,
    pub stdout: Option<mpsc::Receiver<Bytes>>,
    pub stderr: Option<mpsc::Receiver<Bytes>>,
    readers: Vec<(tokio::task::JoinHandle<()>, String)>,
    fifos: ExecFifos,
}

impl StreamedExec {
    /// After the exit: lets the output readers finish (releasing those whose FIFO the
    /// shim never opened), deletes the exec from the shim and removes the FIFOs.
    pub async fn finish(self) {
        for (reader, path) in self.readers {
            tokio::pin!(reader);
            if tokio::time::timeout(Duration::from_secs(2), &mut reader).await.is_err() {
                release_reader(&path);
                let _ = reader.await;
            }
        }
        let handle = &self.handle;
        let delete = DeleteRequest { id: handle.container_id.clone(), exec_id: handle.exec_id.clone(), ..Default::default() };
        let _ = handle.client.delete(context(), &delete).await;
        drop(self.fifos);
    }
}

/// Reads a FIFO on a blocking thread until the shim closes it, passing on its chunks.
fn follow_fifo(path: &str, sink: mpsc::Sender<Bytes>) -> CoreResult<tokio::task::JoinHandle<()>> {
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error(format!("opening {path}")))?;
    Ok(tokio::task::spawn_blocking(move || pump_fifo(fifo, sink)))
}

fn pump_fifo(fifo: std::fs::File, sink: mpsc::Sender<Bytes>) {
    // A client that went away still lets the shim's writes drain.
    read_fifo(fifo, |bytes| {
        let _ = sink.blocking_send(Bytes::copy_from_slice(bytes));
    });
}

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

impl Core {
    fn running_container(&self, namespace: &str, id: &str) -> CoreResult<ContainerRecord> {
        let record = self.container(namespace, id)?;
        if record.state != ContainerState::Running {
            return Err(CoreError::FailedPrecondition(format!("container {} is not running", record.id)));
        }
        Ok(record)
    }

    /// Starts `command` in the container with the stdio `wanted` asks for.
    pub async fn exec_streamed(&self, namespace: &str, id: &str, command: &[String], wanted: StdioWanted) -> CoreResult<StreamedExec> {
        if command.is_empty() {
            return Err(CoreError::InvalidArgument("exec needs a command".into()));
        }
        let record = self.running_container(namespace, id)?;
        let client = self.shims.client(&record.shim_address).await?;
        let exec_id = ids::new_id()?[..16].to_string();
        let fifos = ExecFifos::create_named(self.paths.exec_dir().join(&exec_id), &["stdin", "stdout", "stderr"])?;
        let handle = ProcessHandle { client: client.clone(), container_id: record.id.clone(), exec_id: exec_id.clone() };
        let mut exec = StreamedExec { handle: handle.clone(), stdin: None, stdout: None, stderr: None, readers: Vec::new(), fifos };
        let path = |name: &str, on: bool| if on { exec.fifos.path(name) } else { String::new() };
        let (stdin, stdout, stderr) = (path("stdin", wanted.stdin), path("stdout", wanted.stdout), path("stderr", wanted.stderr && !wanted.tty));
        for (name, fifo) in [("stdout", &stdout), ("stderr", &stderr)] {
            if fifo.is_empty() {
                continue;
            }
            let (sink, source) = mpsc::channel(16);
            exec.readers.push((follow_fifo(fifo, sink)?, fifo.clone()));
            match name {
                "stdout" => exec.stdout = Some(source),
                _ => exec.stderr = Some(source),
            }
        }
        let request = ExecProcessRequest {
            id: record.id.clone(),
            exec_id: exec_id.clone(),
            terminal: wanted.tty,
            stdin: stdin.clone(),
            stdout,
            stderr,
            spec: Some(process_spec(Path::new(&record.bundle), command, wanted.tty)?).into(),
            ..Default::default()
        };
        let started = match client.exec(context(), &request).await {
            Ok(_) => client.start(context(), &StartRequest { id: record.id.clone(), exec_id, ..Default::default() }).await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            exec.finish().await;
            return Err(error.into());
        }
        if wanted.stdin {
            exec.stdin = Some(open_stdin(&stdin, handle, true, false)?);
        }
        Ok(exec)
    }
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

/// Whether the file at `path` is no longer the one open as `file`.
async fn rotated(file: &tokio::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, tokio::fs::metadata(path).await) {
        (Ok(open), Ok(named)) => open.ino() != named.ino() || open.dev() != named.dev(),
        _ => false,
    }
}

/// Reads what the log holds now and sends its complete entries; false once the
/// client is gone.
async fn pass_on(file: &mut tokio::fs::File, pending: &mut Vec<u8>, sink: &mpsc::Sender<(bool, Bytes)>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        let count = file.read(&mut buffer).await.unwrap_or(0);
        if count == 0 {
            return true;
        }
        pending.extend_from_slice(&buffer[..count]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some((stderr, content, partial)) = parse_log_line(&line[..line.len() - 1]) {
                let mut bytes = content.to_vec();
                if !partial {
                    bytes.push(b'\n');
                }
                if sink.send((stderr, Bytes::from(bytes))).await.is_err() {
                    return false;
                }
            }
        }
    }
}

impl Core {
    /// Attaches to the container's init: its logged output from now on (a TTY's output
    /// is logged by the shim as `stdout`), and its stdin when it was created with one and
    /// `stdin` is asked for. With `stdin_once`, the end of this client's input closes
    /// the container's stdin (for a TTY, after an end-of-file character).
    pub async fn attach(&self, namespace: &str, id: &str, stdin: bool) -> CoreResult<Attachment> {
        let record = self.running_container(namespace, id)?;
        let Some(log) = output_log(&record) else {
            return Err(CoreError::FailedPrecondition(format!("container {} has neither a log nor stdin: no output to attach to", record.id)));
        };
        let client = self.shims.client(&record.shim_address).await?;
        let handle = ProcessHandle { client, container_id: record.id.clone(), exec_id: String::new() };
        let stdin = match stdin && record.spec.stdin {
            true => {
                let path = container_stdin_path(Path::new(&record.bundle)).display().to_string();
                Some(open_stdin(&path, handle.clone(), record.spec.stdin_once, record.spec.tty)?)
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

    /// Where a pod's ports are: its pinned network namespace, or `None` for a pod on
    /// the host's network.
    pub fn pod_network(&self, namespace: &str, pod_id: &str) -> CoreResult<Option<PathBuf>> {
        let sandbox = self.sandbox(namespace, pod_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(CoreError::FailedPrecondition(format!("pod {} is not ready", sandbox.id)));
        }
        Ok(sandbox.netns.map(PathBuf::from))
    }
}

/// Connects to `port` on the loopback of a network namespace (`None`: this process's).
/// The socket is made on a short-lived thread that entered the namespace, so it
/// belongs there; the thread ends right after.
pub async fn connect_in_netns(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("berth-portfwd".into()).spawn(move || {
        let _ = reply.send(connect_blocking(netns.as_deref(), port));
    })?;
    let stream = answer.await.map_err(|_| std::io::Error::other("the connecting thread failed"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

fn connect_blocking(netns: Option<&Path>, port: u16) -> std::io::Result<std::net::TcpStream> {
    if let Some(netns) = netns {
        let file = std::fs::File::open(netns)?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    }
    let timeout = Duration::from_secs(5);
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&v4, timeout) {
        Ok(stream) => Ok(stream),
        Err(error) => std::net::TcpStream::connect_timeout(&std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), timeout).map_err(|_| error),
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
}
