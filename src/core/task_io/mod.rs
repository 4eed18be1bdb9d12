//! The stdio of processes in a container's shim: one API for both front doors, which
//! only translate to it (the Docker façade's hijacked streams, the CRI streaming
//! server's channels).
//! - Exec: a process started in a running container with stdio FIFOs, either paths
//!   the door made itself ([`TaskIo`], [`Core::exec_start`]) or FIFOs made here and
//!   read into channels ([`Core::exec_streamed`]).
//! - A [`ProcessHandle`] on a container's init or an exec: resize its terminal, close
//!   its stdin, signal it, wait for it, delete it.
//! - Attach ([`attach`]): a container's output followed from its log, its stdin FIFO.
//! - Pause and resume, and the process list.
pub mod attach;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use containerd_shim_protos::api::{
    CloseIORequest, DeleteRequest, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest, ResizePtyRequest, ResumeRequest, StartRequest, WaitRequest,
};
use containerd_shim_protos::shim_async::TaskClient;
use protobuf::well_known_types::any::Any;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::exec::{process_spec, process_spec_with, read_fifo, release_reader, ExecFifos};
use super::*;
use crate::task::context;

pub use attach::{Attachment, ATTACH_LOG_ROTATE_BYTES};

/// FIFO paths for a process's stdio; an empty path is not connected.
#[derive(Debug, Clone, Default)]
pub struct TaskIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Which stdio a streamed process gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdioWanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// What an exec'd process runs, over the container's own process settings.
#[derive(Debug, Clone, Default)]
pub struct ExecProcess {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<(u32, u32)>,
    pub working_dir: String,
    pub privileged: bool,
}

/// The container's process spec with `process`'s arguments, environment, user and
/// working directory.
fn exec_spec(bundle: &Path, process: &ExecProcess, terminal: bool) -> CoreResult<Any> {
    process_spec_with(bundle, &process.args, terminal, |spec| {
        if !process.env.is_empty() {
            let mut env: Vec<serde_json::Value> = spec.get("env").and_then(|e| e.as_array()).cloned().unwrap_or_default();
            env.extend(process.env.iter().map(|e| serde_json::json!(e)));
            spec.insert("env".into(), serde_json::Value::Array(env));
        }
        if let Some((uid, gid)) = process.user {
            spec.insert("user".into(), serde_json::json!({"uid": uid, "gid": gid}));
        }
        if !process.working_dir.is_empty() {
            spec.insert("cwd".into(), serde_json::json!(process.working_dir));
        }
    })
}

/// A process in a shim: the container's init (empty exec id) or an exec.
#[derive(Clone)]
pub struct ProcessHandle {
    client: TaskClient,
    container_id: String,
    exec_id: String,
}

impl ProcessHandle {
    fn new(client: TaskClient, container_id: &str, exec_id: &str) -> ProcessHandle {
        ProcessHandle { client, container_id: container_id.into(), exec_id: exec_id.into() }
    }

    /// Creates this exec in the shim with `spec` and `io` and starts it: its pid. A
    /// process that fails to start is deleted.
    async fn start_exec(&self, spec: Any, io: &TaskIo) -> CoreResult<u32> {
        let request = ExecProcessRequest {
            id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            terminal: io.terminal,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            spec: Some(spec).into(),
            ..Default::default()
        };
        self.client.exec(context(), &request).await?;
        let start = StartRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), ..Default::default() };
        match self.client.start(context(), &start).await {
            Ok(started) => Ok(started.pid),
            Err(error) => {
                self.delete().await;
                Err(error.into())
            }
        }
    }

    pub async fn resize(&self, width: u32, height: u32) -> CoreResult<()> {
        let request = ResizePtyRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), width, height, ..Default::default() };
        self.client.resize_pty(context(), &request).await?;
        Ok(())
    }

    /// Tells the shim to close the process's stdin (its reader sees the end).
    pub async fn close_stdin(&self) -> CoreResult<()> {
        let request = CloseIORequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), stdin: true, ..Default::default() };
        self.client.close_io(context(), &request).await?;
        Ok(())
    }

    /// Sends `signal` to the process (with `all`, to every process of the container).
    pub async fn signal(&self, signal: u32, all: bool) -> CoreResult<()> {
        let request = KillRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), signal, all, ..Default::default() };
        self.client.kill(context(), &request).await?;
        Ok(())
    }

    pub async fn kill(&self) {
        let _ = self.signal(libc::SIGKILL as u32, false).await;
    }

    /// Waits for the process to exit: its exit status.
    pub async fn wait(&self) -> CoreResult<i32> {
        let request = WaitRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), ..Default::default() };
        Ok(self.client.wait(ttrpc::context::Context::default(), &request).await?.exit_status as i32)
    }

    /// Forgets an exited exec in the shim.
    pub async fn delete(&self) {
        let request = DeleteRequest { id: self.container_id.clone(), exec_id: self.exec_id.clone(), ..Default::default() };
        let _ = self.client.delete(context(), &request).await;
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
    fn open(path: &str, handle: ProcessHandle, closes_process: bool, terminal: bool) -> CoreResult<ProcessStdin> {
        let writer = pipe::OpenOptions::new().read_write(true).open_sender(path).map_err(io_error(format!("opening {path}")))?;
        Ok(ProcessStdin { writer, handle, closes_process, terminal })
    }

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
    /// Starts reading the output FIFOs that `io` names (before the shim opens them).
    fn follow_output(&mut self, io: &TaskIo) -> CoreResult<()> {
        for (fifo, is_stdout) in [(&io.stdout, true), (&io.stderr, false)] {
            if fifo.is_empty() {
                continue;
            }
            let (sink, source) = mpsc::channel(16);
            self.readers.push((follow_fifo(fifo, sink)?, fifo.clone()));
            match is_stdout {
                true => self.stdout = Some(source),
                false => self.stderr = Some(source),
            }
        }
        Ok(())
    }

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
        self.handle.delete().await;
        drop(self.fifos);
    }
}

/// Reads a FIFO on a blocking thread until the shim closes it, passing on its chunks
/// (a client that went away still lets the shim's writes drain).
fn follow_fifo(path: &str, sink: mpsc::Sender<Bytes>) -> CoreResult<tokio::task::JoinHandle<()>> {
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error(format!("opening {path}")))?;
    Ok(tokio::task::spawn_blocking(move || {
        read_fifo(fifo, |bytes| {
            let _ = sink.blocking_send(Bytes::copy_from_slice(bytes));
        })
    }))
}

impl Core {
    async fn running_task(&self, namespace: &str, id: &str) -> CoreResult<(ContainerRecord, TaskClient)> {
        let record = self.container(namespace, id)?;
        if record.state != ContainerState::Running {
            return Err(CoreError::FailedPrecondition(format!("container {} is not running", record.id)));
        }
        let client = self.shims.client(&record.shim_address).await?;
        Ok((record, client))
    }

    /// A handle on the init (empty `exec_id`) or an exec of a running container.
    pub async fn process(&self, namespace: &str, id: &str, exec_id: &str) -> CoreResult<ProcessHandle> {
        let (record, client) = self.running_task(namespace, id).await?;
        Ok(ProcessHandle::new(client, &record.id, exec_id))
    }

    /// Creates and starts `exec_id` in the running container with the FIFOs of `io`;
    /// returns its pid.
    pub async fn exec_start(&self, namespace: &str, id: &str, exec_id: &str, process: &ExecProcess, io: &TaskIo) -> CoreResult<u32> {
        if process.args.is_empty() {
            return Err(CoreError::InvalidArgument("exec needs a command".into()));
        }
        let (record, client) = self.running_task(namespace, id).await?;
        let spec = exec_spec(Path::new(&record.bundle), process, io.terminal)?;
        ProcessHandle::new(client, &record.id, exec_id).start_exec(spec, io).await
    }

    /// Waits for an exec'd process, deletes it from the shim and returns its exit code.
    pub async fn exec_wait(&self, namespace: &str, id: &str, exec_id: &str) -> CoreResult<i32> {
        let record = self.container(namespace, id)?;
        let client = self.shims.client(&record.shim_address).await?;
        let handle = ProcessHandle::new(client, &record.id, exec_id);
        let exit = handle.wait().await;
        handle.delete().await;
        exit
    }

    /// Starts `command` in the container with the stdio `wanted` asks for, through
    /// FIFOs made here and read into channels.
    pub async fn exec_streamed(&self, namespace: &str, id: &str, command: &[String], wanted: StdioWanted) -> CoreResult<StreamedExec> {
        if command.is_empty() {
            return Err(CoreError::InvalidArgument("exec needs a command".into()));
        }
        let (record, client) = self.running_task(namespace, id).await?;
        // Read before any FIFO reader starts: an error here must not leave one waiting.
        let spec = process_spec(Path::new(&record.bundle), command, wanted.tty)?;
        let exec_id = ids::new_id()?[..16].to_string();
        let fifos = ExecFifos::create_named(self.paths.exec_dir().join(&exec_id), &["stdin", "stdout", "stderr"])?;
        let path = |name: &str, on: bool| if on { fifos.path(name) } else { String::new() };
        let io = TaskIo { stdin: path("stdin", wanted.stdin), stdout: path("stdout", wanted.stdout), stderr: path("stderr", wanted.stderr && !wanted.tty), terminal: wanted.tty };
        let handle = ProcessHandle::new(client, &record.id, &exec_id);
        let mut exec = StreamedExec { handle: handle.clone(), stdin: None, stdout: None, stderr: None, readers: Vec::new(), fifos };
        let started = match exec.follow_output(&io) {
            Ok(()) => handle.start_exec(spec, &io).await,
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            exec.finish().await;
            return Err(error);
        }
        if wanted.stdin {
            exec.stdin = Some(ProcessStdin::open(&io.stdin, handle, true, false)?);
        }
        Ok(exec)
    }

    /// Sends `signal` to the container's init (or to all its processes).
    pub async fn signal_container(&self, namespace: &str, id: &str, signal: u32, all: bool) -> CoreResult<()> {
        self.process(namespace, id, "").await?.signal(signal, all).await
    }

    /// Resizes the terminal of the container's init (empty `exec_id`) or of an exec.
    pub async fn resize_terminal(&self, namespace: &str, id: &str, exec_id: &str, width: u32, height: u32) -> CoreResult<()> {
        self.process(namespace, id, exec_id).await?.resize(width, height).await
    }

    /// Closes a process's stdin (its reader sees the end).
    pub async fn close_stdin(&self, namespace: &str, id: &str, exec_id: &str) -> CoreResult<()> {
        self.process(namespace, id, exec_id).await?.close_stdin().await
    }

    /// Freezes (`true`) or thaws the container's processes.
    pub async fn set_paused(&self, namespace: &str, id: &str, paused: bool) -> CoreResult<()> {
        let (record, client) = self.running_task(namespace, id).await?;
        if paused {
            client.pause(context(), &PauseRequest { id: record.id, ..Default::default() }).await?;
        } else {
            client.resume(context(), &ResumeRequest { id: record.id, ..Default::default() }).await?;
        }
        Ok(())
    }

    /// The host pids of the container's processes.
    pub async fn container_pids(&self, namespace: &str, id: &str) -> CoreResult<Vec<u32>> {
        let (record, client) = self.running_task(namespace, id).await?;
        let response = client.pids(context(), &PidsRequest { id: record.id, ..Default::default() }).await?;
        Ok(response.processes.iter().map(|p| p.pid).collect())
    }

    /// Makes an exited container startable again (Docker's start of a stopped
    /// container, and restart): the same bundle and writable layer, a new task.
    pub async fn rearm_container(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let (_guard, mut record) = self.lock_pod_of(namespace, id).await?;
        if record.state != ContainerState::Exited {
            return Ok(());
        }
        record.state = ContainerState::Created;
        record.pid = 0;
        record.reason.clear();
        record.message.clear();
        self.save_container(&record)
    }
}
