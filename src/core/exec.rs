//! Running a command in a running container and collecting its output (the CRI's
//! ExecSync): the process spec is the container's own with other arguments, its
//! stdout and stderr come back through FIFOs, and a deadline kills it.
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api::{DeleteRequest, ExecProcessRequest, KillRequest, StartRequest, WaitRequest};
use protobuf::well_known_types::any::Any;

use super::*;
use crate::task::context;

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// The FIFOs of one exec; removed when dropped.
pub(crate) struct ExecFifos {
    dir: PathBuf,
}

impl ExecFifos {
    pub(crate) fn create(dir: PathBuf) -> CoreResult<ExecFifos> {
        Self::create_named(dir, &["stdout", "stderr"])
    }

    pub(crate) fn create_named(dir: PathBuf, names: &[&str]) -> CoreResult<ExecFifos> {
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let fifos = ExecFifos { dir };
        for name in names {
            nix::unistd::mkfifo(&fifos.dir.join(name), nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| CoreError::Internal(format!("mkfifo: {e}")))?;
        }
        Ok(fifos)
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for ExecFifos {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens the read end of a FIFO now (so the shim's open of the write end cannot fail
/// or race), and reads it to its end on a blocking thread: the end comes when the shim
/// closes it after copying the process's output. At most `limit` bytes are kept.
fn drain(path: String, limit: usize) -> CoreResult<tokio::task::JoinHandle<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(io_error(format!("opening {path}")))?;
    Ok(tokio::task::spawn_blocking(move || read_until_closed(fifo, limit)))
}

/// Reads a FIFO until its writers are gone, passing each chunk on. The FIFO was opened
/// before any writer: poll reports neither data nor hang-up until a writer has come,
/// so an early read cannot mistake "no writer yet" for the end.
pub(crate) fn read_fifo(mut fifo: std::fs::File, mut chunk: impl FnMut(&[u8])) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
        match fifo.read(&mut buffer) {
            Ok(0) => return,
            Ok(count) => chunk(&buffer[..count]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock || error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The first `limit` bytes the FIFO carries.
fn read_until_closed(fifo: std::fs::File, limit: usize) -> Vec<u8> {
    let mut collected = Vec::new();
    read_fifo(fifo, |bytes| {
        let room = limit.saturating_sub(collected.len());
        collected.extend_from_slice(&bytes[..bytes.len().min(room)]);
    });
    collected
}

/// Releases a reader whose FIFO the shim never opened (the process never started):
/// a writer that comes and goes gives it its hang-up.
pub(crate) fn release_reader(path: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path);
}

/// The container's own process spec with `command` as its arguments. A config.json
/// whose `process` is not an object is reported, not indexed into.
pub(crate) fn process_spec(bundle: &Path, command: &[String], terminal: bool) -> CoreResult<Any> {
    process_spec_with(bundle, command, terminal, |_| {})
}

/// [`process_spec`], with `adjust` applied to the process object last.
pub(crate) fn process_spec_with(
    bundle: &Path,
    command: &[String],
    terminal: bool,
    adjust: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> CoreResult<Any> {
    let path = bundle.join("config.json");
    let config = std::fs::read(&path).map_err(io_error("reading the container's config.json"))?;
    let malformed = |what: String| CoreError::Internal(format!("{} is malformed: {what}", path.display()));
    let config: serde_json::Value = serde_json::from_slice(&config).map_err(|e| malformed(e.to_string()))?;
    let mut process = match config.get("process") {
        Some(serde_json::Value::Object(process)) => process.clone(),
        Some(other) => return Err(malformed(format!("its process is {other}, not an object"))),
        None => return Err(malformed("it has no process".into())),
    };
    process.insert("args".into(), serde_json::json!(command));
    process.insert("terminal".into(), serde_json::json!(terminal));
    adjust(&mut process);
    let value = serde_json::Value::Object(process).to_string().into_bytes();
    Ok(Any { type_url: PROCESS_TYPE_URL.into(), value, ..Default::default() })
}

impl Core {
    /// Runs `command` in the container and waits at most `timeout` (zero: no limit).
    pub async fn exec_sync(&self, namespace: &str, id: &str, command: &[String], timeout: Duration) -> CoreResult<ExecOutput> {
        if command.is_empty() {
            return Err(CoreError::InvalidArgument("exec needs a command".into()));
        }
        let record = self.container(namespace, id)?;
        if record.state != ContainerState::Running {
            return Err(CoreError::FailedPrecondition(format!("container {} is not running", record.id)));
        }
        let client = self.shims.client(&record.shim_address).await?;
        // Read before any FIFO reader starts: an error here must not leave one waiting.
        let spec = process_spec(Path::new(&record.bundle), command, false)?;
        let exec_id = ids::new_id()?[..16].to_string();
        let fifos = ExecFifos::create(self.paths.exec_dir().join(&exec_id))?;
        let limit = self.config.cri.max_exec_output_bytes;
        let stdout = drain(fifos.path("stdout"), limit)?;
        let stderr = drain(fifos.path("stderr"), limit)?;
        let request = ExecProcessRequest {
            id: record.id.clone(),
            exec_id: exec_id.clone(),
            stdout: fifos.path("stdout"),
            stderr: fifos.path("stderr"),
            spec: Some(spec).into(),
            ..Default::default()
        };
        let outcome = match client.exec(context(), &request).await {
            Ok(_) => self.run_exec(&client, &record.id, &exec_id, timeout).await,
            Err(error) => Err(error.into()),
        };
        let delete = DeleteRequest { id: record.id.clone(), exec_id: exec_id.clone(), ..Default::default() };
        let _ = client.delete(context(), &delete).await;
        let stdout = finish_reader(stdout, &fifos.path("stdout")).await;
        let stderr = finish_reader(stderr, &fifos.path("stderr")).await;
        drop(fifos);
        let exit_code = outcome?;
        Ok(ExecOutput { stdout, stderr, exit_code })
    }

    async fn run_exec(&self, client: &containerd_shim_protos::shim_async::TaskClient, id: &str, exec_id: &str, timeout: Duration) -> CoreResult<i32> {
        client.start(context(), &StartRequest { id: id.into(), exec_id: exec_id.into(), ..Default::default() }).await?;
        let wait = WaitRequest { id: id.into(), exec_id: exec_id.into(), ..Default::default() };
        let waiting = client.wait(ttrpc::context::Context::default(), &wait);
        if timeout.is_zero() {
            return Ok(waiting.await?.exit_status as i32);
        }
        match tokio::time::timeout(timeout, waiting).await {
            Ok(exit) => Ok(exit?.exit_status as i32),
            Err(_) => {
                let kill = KillRequest { id: id.into(), exec_id: exec_id.into(), signal: libc::SIGKILL as u32, ..Default::default() };
                let _ = client.kill(context(), &kill).await;
                let _ = client.wait(context(), &wait).await;
                Err(CoreError::DeadlineExceeded(format!("command timed out after {timeout:?}")))
            }
        }
    }
}

/// The reader's bytes, once the shim closed the FIFO; a reader whose FIFO was never
/// opened by the shim (the exec failed) is released.
async fn finish_reader(reader: tokio::task::JoinHandle<Vec<u8>>, path: &str) -> Vec<u8> {
    tokio::pin!(reader);
    if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(2), &mut reader).await {
        return bytes;
    }
    release_reader(path);
    reader.await.unwrap_or_default()
}
