//! A process's stdio. Plain mode hands the output FIFOs containerd created straight
//! to the process (no copying by the shim) and feeds stdin through a pipe so CloseIO
//! can end it. TTY mode listens on a console socket for the pty master, then copies
//! between the FIFOs and the master (without an output FIFO, from the master into the
//! CRI log, as a `stdout` stream: the CRI's TTY containers). CRI log mode gives the process pipes whose lines
//! the shim writes to the log file itself.

use std::fs::OpenOptions;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_runtime::ProcessStdio;
use nix::fcntl::OFlag;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::pipe;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, Notify};

use crate::crilog::CriLog;
use crate::error::{ShimError, ShimResult};
use crate::process::{ProcIo, StdioPaths};

const COPY_BUFFER: usize = 4096;

/// Stdio made ready before the runtime creates the process, and the copying to
/// start once it exists.
pub struct Prepared {
    pub stdio: Option<ProcessStdio>,
    pub console_socket: Option<PathBuf>,
    pending: Vec<Pending>,
}

enum Pending {
    Stdin { fifo: String, pipe: OwnedFd },
    Console { listener: StdUnixListener, path: PathBuf, stdin: String, output: ConsoleOutput },
    Log { pipe: OwnedFd, stream: &'static str, log: Arc<CriLog>, partial_delay: std::time::Duration },
}

/// Where a terminal's output goes: an output FIFO, or a pipe into the CRI log.
enum ConsoleOutput {
    Fifo(String),
    Log(OwnedFd),
}

/// Opens what `paths` names. `socket` is where a console socket goes in TTY mode.
pub fn prepare(paths: &StdioPaths, socket: &Path, log: Option<Arc<CriLog>>) -> ShimResult<Prepared> {
    if paths.terminal {
        let _ = std::fs::remove_file(socket);
        let listener = StdUnixListener::bind(socket)
            .and_then(|l| berth_runtime::private_fs::set_mode(socket, berth_runtime::private_fs::PRIVATE_FILE).map(|_| l))
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .map_err(|e| ShimError::io(format!("binding {}", socket.display()), e))?;
        let mut pending = Vec::new();
        let output = match log {
            Some(log) if paths.stdout.is_empty() => {
                let (reader, writer) = cloexec_pipe()?;
                pending.push(Pending::Log { pipe: reader, stream: "stdout", log, partial_delay: crate::crilog::TERMINAL_PARTIAL_DELAY });
                ConsoleOutput::Log(writer)
            }
            _ => ConsoleOutput::Fifo(paths.stdout.clone()),
        };
        pending.push(Pending::Console { listener, path: socket.into(), stdin: paths.stdin.clone(), output });
        return Ok(Prepared { stdio: None, console_socket: Some(socket.into()), pending });
    }
    let mut pending = Vec::new();
    let stdin = if paths.stdin.is_empty() {
        dev_null(false)?
    } else {
        let (reader, writer) = cloexec_pipe()?;
        pending.push(Pending::Stdin { fifo: paths.stdin.clone(), pipe: writer });
        reader
    };
    let (stdout, stderr) = match log {
        Some(log) => {
            let (out_reader, out_writer) = cloexec_pipe()?;
            let (err_reader, err_writer) = cloexec_pipe()?;
            let partial_delay = crate::crilog::PARTIAL_LINE_DELAY;
            pending.push(Pending::Log { pipe: out_reader, stream: "stdout", log: log.clone(), partial_delay });
            pending.push(Pending::Log { pipe: err_reader, stream: "stderr", log, partial_delay });
            (out_writer, err_writer)
        }
        None => (output(&paths.stdout)?, output(&paths.stderr)?),
    };
    Ok(Prepared { stdio: Some(ProcessStdio { stdin, stdout, stderr }), console_socket: None, pending })
}

impl Prepared {
    /// Starts the copying, once the runtime has created the process (and dropped
    /// its copies of the process's ends).
    pub fn spawn(self, io: &mut ProcIo) {
        let (done, output_done) = mpsc::channel::<()>(1);
        for pending in self.pending {
            match pending {
                Pending::Stdin { fifo, pipe } => {
                    let close = Arc::new(Notify::new());
                    io.close_stdin = Some(close.clone());
                    tokio::spawn(copy_stdin(fifo, pipe, close));
                }
                Pending::Console { listener, path, stdin, output } => {
                    let close = Arc::new(Notify::new());
                    io.close_stdin = Some(close.clone());
                    let slot = io.console.clone();
                    // Registered before the RPC answers, so ResizePty can follow at once.
                    let master = match console_now(listener) {
                        ConsoleSource::Master(fd) => register(fd, &slot).map(ConsoleSource::Registered).unwrap_or(ConsoleSource::Failed),
                        other => other,
                    };
                    tokio::spawn(run_console(master, path, stdin, output, slot, close, done.clone()));
                }
                Pending::Log { pipe, stream, log, partial_delay } => {
                    tokio::spawn(crate::crilog::pump(pipe, stream, log, partial_delay, done.clone()));
                }
            }
        }
        io.output_done = Some(output_done);
    }
}

fn dev_null(write: bool) -> ShimResult<OwnedFd> {
    let file = OpenOptions::new().read(!write).write(write).open("/dev/null").map_err(|e| ShimError::io("opening /dev/null", e))?;
    Ok(file.into())
}

/// An output FIFO, opened read-write so that opening never blocks and writes never
/// fail for want of a reader; the process gets it directly.
fn output(path: &str) -> ShimResult<OwnedFd> {
    if path.is_empty() {
        return dev_null(true);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ShimError::io(format!("opening {path}"), e))?;
    Ok(file.into())
}

fn cloexec_pipe() -> ShimResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::io("pipe2", e))
}

fn nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::F_SETFL(flags))?;
    Ok(())
}

/// Copies the stdin FIFO into the process's stdin pipe until EOF or CloseIO.
async fn copy_stdin(fifo: String, pipe: OwnedFd, close: Arc<Notify>) {
    let Ok(mut source) = pipe::OpenOptions::new().read_write(true).open_receiver(&fifo) else { return };
    if nonblocking(&pipe).is_err() {
        return;
    }
    let Ok(mut sink) = pipe::Sender::from_owned_fd(pipe) else { return };
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let read = tokio::select! {
            read = source.read(&mut buffer) => read,
            _ = close.notified() => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if sink.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
}

type ConsoleSlot = Arc<std::sync::Mutex<Option<Arc<AsyncFd<OwnedFd>>>>>;

/// Where the pty master is, or will come from.
enum ConsoleSource {
    Registered(Arc<AsyncFd<OwnedFd>>),
    Master(OwnedFd),
    Stream(UnixStream),
    Listener(StdUnixListener),
    Failed,
}

/// The runtime has normally sent the master by the time it returns: take it now.
fn console_now(listener: StdUnixListener) -> ConsoleSource {
    let stream = match listener.accept() {
        Ok((stream, _)) => stream,
        Err(_) => return ConsoleSource::Listener(listener),
    };
    if stream.set_nonblocking(true).is_err() {
        return ConsoleSource::Failed;
    }
    match receive_fd(stream.as_raw_fd()) {
        Ok(fd) => ConsoleSource::Master(fd),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ConsoleSource::Stream(stream),
        Err(_) => ConsoleSource::Failed,
    }
}

fn register(master: OwnedFd, slot: &ConsoleSlot) -> std::io::Result<Arc<AsyncFd<OwnedFd>>> {
    nonblocking(&master)?;
    // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open until dropped.
    let master = Arc::new(unsafe { AsyncFd::register(master) }.map_err(|e| std::io::Error::other(e.to_string()))?);
    if let Ok(mut guard) = slot.lock() {
        *guard = Some(master.clone());
    }
    Ok(master)
}

async fn obtain_master(source: ConsoleSource, slot: &ConsoleSlot) -> std::io::Result<Arc<AsyncFd<OwnedFd>>> {
    let stream = match source {
        ConsoleSource::Registered(master) => return Ok(master),
        ConsoleSource::Master(fd) => return register(fd, slot),
        ConsoleSource::Failed => return Err(std::io::Error::other("no pty master")),
        ConsoleSource::Stream(stream) => tokio::net::UnixStream::from_std(stream)?,
        ConsoleSource::Listener(listener) => {
            listener.set_nonblocking(true)?;
            UnixListener::from_std(listener)?.accept().await?.0
        }
    };
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || receive_fd(stream.as_raw_fd())) {
            Ok(fd) => return register(fd, slot),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Copies between the pty master and the FIFOs once the master is there.
async fn run_console(
    source: ConsoleSource,
    path: PathBuf,
    stdin: String,
    output: ConsoleOutput,
    slot: ConsoleSlot,
    close: Arc<Notify>,
    done: mpsc::Sender<()>,
) {
    let master = obtain_master(source, &slot).await;
    let _ = std::fs::remove_file(&path);
    let Ok(master) = master else { return };
    if !stdin.is_empty() {
        tokio::spawn(copy_into_master(stdin, master.clone(), close));
    }
    copy_from_master(output, &master).await;
    drop(done);
}

fn receive_fd(socket: RawFd) -> std::io::Result<OwnedFd> {
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            if let Some(fd) = fds.first() {
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no descriptor on the console socket"))
}

async fn copy_into_master(fifo: String, master: Arc<AsyncFd<OwnedFd>>, close: Arc<Notify>) {
    let Ok(mut source) = pipe::OpenOptions::new().read_write(true).open_receiver(&fifo) else { return };
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let read = tokio::select! {
            read = source.read(&mut buffer) => read,
            _ = close.notified() => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if write_fd(&master, &buffer[..n]).await.is_err() {
            break;
        }
    }
}

async fn copy_from_master(output: ConsoleOutput, master: &AsyncFd<OwnedFd>) {
    let mut sink = match output {
        ConsoleOutput::Fifo(path) if path.is_empty() => None,
        ConsoleOutput::Fifo(path) => pipe::OpenOptions::new().read_write(true).open_sender(path).ok(),
        ConsoleOutput::Log(pipe) => nonblocking(&pipe).ok().and_then(|_| pipe::Sender::from_owned_fd(pipe).ok()),
    };
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = match read_fd(master, &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(out) = sink.as_mut() {
            if out.write_all(&buffer[..n]).await.is_err() {
                sink = None;
            }
        }
    }
}

pub async fn read_fd(fd: &AsyncFd<OwnedFd>, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| nix::unistd::read(inner.as_raw_fd(), buffer).map_err(std::io::Error::from)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn write_fd(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Sets the terminal size on a pty master.
pub fn resize(master: &AsyncFd<OwnedFd>, width: u32, height: u32) -> std::io::Result<()> {
    let size = libc::winsize { ws_row: height as u16, ws_col: width as u16, ws_xpixel: 0, ws_ypixel: 0 };
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
