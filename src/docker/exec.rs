//! Exec: create (kept in memory), start (detached, or attached through the hijacked
//! stream with or without a TTY), inspect (running, exit code) and resize.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::containers::{docker_id, find};
use super::hijack::{self, frame, Output};
use super::logs::{STDERR, STDOUT};
use super::{DockerError, DockerResult, NAMESPACE};
use crate::core::task_io::{ExecProcess, TaskIo};
use crate::core::*;

pub fn routes() -> Router<super::State> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/json", get(inspect))
        .route("/exec/{id}/resize", post(resize))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: Option<bool>,
    pub attach_stdout: Option<bool>,
    pub attach_stderr: Option<bool>,
    pub tty: Option<bool>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub privileged: Option<bool>,
}

#[derive(Debug, Default)]
pub struct ExecStatus {
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub pid: u32,
}

pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub docker_container_id: String,
    pub config: ExecConfig,
    pub status: Mutex<ExecStatus>,
}

fn exec_record(docker: &super::Docker, id: &str) -> DockerResult<Arc<ExecRecord>> {
    let execs = docker.execs.lock().map_err(|_| DockerError::internal("exec table poisoned"))?;
    execs.get(id).cloned().ok_or_else(|| DockerError::not_found(format!("No such exec instance: {id}")))
}

fn running_container(docker: &super::Docker, id: &str) -> DockerResult<ContainerRecord> {
    let record = find(&docker.core, id)?;
    if record.state != ContainerState::Running {
        return Err(DockerError::conflict(format!("container {} is not running", docker_id(&record))));
    }
    if docker.is_paused(docker_id(&record)) {
        return Err(DockerError::conflict(format!("Container {} is paused, unpause the container before exec", docker_id(&record))));
    }
    Ok(record)
}

async fn create(State(docker): State<super::State>, Path(id): Path<String>, bytes: Bytes) -> DockerResult<(StatusCode, Json<Value>)> {
    let config: ExecConfig = serde_json::from_slice(&bytes).map_err(|e| DockerError::bad_request(format!("invalid exec config: {e}")))?;
    let record = running_container(&docker, &id)?;
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(DockerError::bad_request("No exec command specified"));
    }
    let exec_id = ids::new_id()?;
    let exec = ExecRecord {
        id: exec_id.clone(),
        container_id: record.id.clone(),
        docker_container_id: docker_id(&record).to_string(),
        config,
        status: Mutex::new(ExecStatus::default()),
    };
    let exec = Arc::new(exec);
    docker.execs.lock().map_err(|_| DockerError::internal("exec table poisoned"))?.insert(exec_id.clone(), exec.clone());
    let action = format!("exec_create: {}", exec_command(&exec.config));
    docker.publish_container(docker_id(&record), &action, &record.spec.name, &record.spec.image);
    Ok((StatusCode::CREATED, Json(json!({ "Id": exec_id }))))
}

/// The command as Docker's exec events name it (`exec_start: sh -c true`).
fn exec_command(config: &ExecConfig) -> String {
    config.cmd.clone().unwrap_or_default().join(" ")
}

/// An exec's event on its container.
fn publish_exec(docker: &super::Docker, exec: &ExecRecord, action: &str) {
    if let Ok(record) = docker.core.container(NAMESPACE, &exec.container_id) {
        docker.publish_container(&exec.docker_container_id, action, &record.spec.name, &record.spec.image);
    }
}

fn user_ids(user: &str) -> DockerResult<Option<(u32, u32)>> {
    if user.is_empty() {
        return Ok(None);
    }
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok(Some((uid, gid))),
        _ => Err(DockerError::bad_request(format!("unable to find user {user}: only numeric users are supported for exec"))),
    }
}

/// The FIFOs of one exec, and readers opened before the shim opens them.
struct ExecPipes {
    dir: PathBuf,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
    /// Writers held until the process started, so that the readers see no early end.
    keepers: Vec<pipe::Sender>,
    io: TaskIo,
}

impl Drop for ExecPipes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fifo(dir: &std::path::Path, name: &str) -> DockerResult<String> {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| DockerError::internal(format!("mkfifo {}: {e}", path.display())))?;
    Ok(path.display().to_string())
}

fn open_pipes(dir: PathBuf, tty: bool, stdin: bool) -> DockerResult<ExecPipes> {
    super::logs::create_private_dirs(&dir).map_err(|e| DockerError::internal(format!("creating {}: {e}", dir.display())))?;
    let mut pipes = ExecPipes { dir: dir.clone(), stdout: None, stderr: None, stdin: None, keepers: Vec::new(), io: TaskIo { terminal: tty, ..TaskIo::default() } };
    let open_error = |e: std::io::Error| DockerError::internal(format!("opening an exec FIFO: {e}"));
    let streams: &[&str] = if tty { &["stdout"] } else { &["stdout", "stderr"] };
    for name in streams {
        let path = fifo(&dir, name)?;
        let receiver = pipe::OpenOptions::new().open_receiver(&path).map_err(open_error)?;
        pipes.keepers.push(pipe::OpenOptions::new().open_sender(&path).map_err(open_error)?);
        if *name == "stdout" {
            pipes.stdout = Some(receiver);
            pipes.io.stdout = path;
        } else {
            pipes.stderr = Some(receiver);
            pipes.io.stderr = path;
        }
    }
    if stdin {
        let path = fifo(&dir, "stdin")?;
        pipes.stdin = Some(pipe::OpenOptions::new().read_write(true).open_sender(&path).map_err(open_error)?);
        pipes.io.stdin = path;
    }
    Ok(pipes)
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: Option<bool>,
}

async fn start(State(docker): State<super::State>, Path(id): Path<String>, mut request: Request) -> DockerResult<Response> {
    let exec = exec_record(&docker, &id)?;
    let body = axum::body::to_bytes(std::mem::take(request.body_mut()), 1 << 20).await.unwrap_or_default();
    let start: StartBody = if body.is_empty() { StartBody::default() } else { serde_json::from_slice(&body).map_err(|e| DockerError::bad_request(format!("invalid JSON: {e}")))? };
    {
        let mut status = exec.status.lock().map_err(|_| DockerError::internal("exec status poisoned"))?;
        if status.started {
            return Err(DockerError::conflict(format!("Exec command {id} has already run")));
        }
        status.started = true;
    }
    running_container(&docker, &exec.docker_container_id)?;
    let config = &exec.config;
    let tty = config.tty.unwrap_or(false);
    let detach = start.detach.unwrap_or(false);
    let pipes = open_pipes(docker.core.paths.state.join("docker").join("exec").join(&exec.id), tty, config.attach_stdin.unwrap_or(false) && !detach)?;
    let process = ExecProcess {
        args: config.cmd.clone().unwrap_or_default(),
        env: config.env.clone().unwrap_or_default(),
        user: user_ids(config.user.as_deref().unwrap_or(""))?,
        working_dir: config.working_dir.clone().unwrap_or_default(),
        privileged: config.privileged.unwrap_or(false),
    };
    if detach {
        launch(&docker, &exec, &process, &pipes).await?;
        tokio::spawn(run_session(docker.clone(), exec.clone(), pipes, None, None));
        return Ok(StatusCode::OK.into_response());
    }
    // Attached, the process starts once the connection is upgraded, as with dockerd: a
    // client that reads the 101 answer through a buffer (docker-py) would otherwise
    // swallow output sent with it.
    Ok(hijack::respond(&mut request, tty, move |output, input| async move {
        match launch(&docker, &exec, &process, &pipes).await {
            Ok(()) => run_session(docker, exec, pipes, Some(output), input).await,
            Err(error) => {
                if let Ok(mut status) = exec.status.lock() {
                    status.exit_code = Some(126);
                }
                let _ = output.send(frame(tty, STDOUT, format!("{}\r\n", error.message).as_bytes())).await;
            }
        }
    }))
}

/// Starts the exec's process in the container and records its pid.
async fn launch(docker: &super::State, exec: &ExecRecord, process: &ExecProcess, pipes: &ExecPipes) -> DockerResult<()> {
    let pid = docker.core.exec_start(NAMESPACE, &exec.container_id, &exec.id, process, &pipes.io).await.map_err(|error| match error {
        CoreError::FailedPrecondition(message) => DockerError::conflict(message),
        other => DockerError::internal(format!("OCI runtime exec failed: {other}")),
    })?;
    if let Ok(mut status) = exec.status.lock() {
        status.running = true;
        status.pid = pid;
    }
    publish_exec(docker, exec, &format!("exec_start: {}", exec_command(&exec.config)));
    Ok(())
}

/// Copies the exec's output to the client (or drops it, detached), feeds its stdin,
/// and records its exit code before the connection closes.
async fn run_session(docker: super::State, exec: Arc<ExecRecord>, mut pipes: ExecPipes, output: Option<Output>, input: Option<hijack::Input>) {
    let tty = exec.config.tty.unwrap_or(false);
    if let (Some(mut sender), Some(mut input)) = (pipes.stdin.take(), input) {
        let (docker, exec) = (docker.clone(), exec.clone());
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut input, &mut sender).await;
            super::stdio::wait_read(&sender).await;
            let _ = docker.core.close_stdin(NAMESPACE, &exec.container_id, &exec.id).await;
        });
    }
    // The FIFOs stay open on this side until the process exits (a terminal's copier
    // in the shim may open them late); then the readers end when the shim closes them.
    let keepers = std::mem::take(&mut pipes.keepers);
    let stdout = copy_stream(pipes.stdout.take(), tty, STDOUT, output.clone());
    let stderr = copy_stream(pipes.stderr.take(), tty, STDERR, output.clone());
    let waiting = async {
        let code = docker.core.exec_wait(NAMESPACE, &exec.container_id, &exec.id).await.unwrap_or(126);
        drop(keepers);
        code
    };
    let (_, _, code) = tokio::join!(stdout, stderr, waiting);
    if let Ok(mut status) = exec.status.lock() {
        status.running = false;
        status.exit_code = Some(code);
    }
    publish_exec(&docker, &exec, "exec_die");
    drop(pipes);
    drop(output);
}

async fn copy_stream(receiver: Option<pipe::Receiver>, tty: bool, stream: u8, output: Option<Output>) {
    let Some(mut receiver) = receiver else { return };
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        match receiver.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(count) => {
                if let Some(output) = &output {
                    let _ = output.send(frame(tty, stream, &buffer[..count])).await;
                }
            }
        }
    }
}

async fn inspect(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Json<Value>> {
    let exec = exec_record(&docker, &id)?;
    let status = exec.status.lock().map_err(|_| DockerError::internal("exec status poisoned"))?;
    let config = &exec.config;
    let command = config.cmd.clone().unwrap_or_default();
    Ok(Json(json!({
        "ID": exec.id, "Running": status.running, "ExitCode": status.exit_code, "CanRemove": false,
        "ContainerID": exec.docker_container_id, "DetachKeys": "", "Pid": status.pid,
        "OpenStdin": config.attach_stdin.unwrap_or(false), "OpenStdout": config.attach_stdout.unwrap_or(false), "OpenStderr": config.attach_stderr.unwrap_or(false),
        "ProcessConfig": {"tty": config.tty.unwrap_or(false), "entrypoint": command.first(), "arguments": command.iter().skip(1).collect::<Vec<_>>(),
                          "privileged": config.privileged.unwrap_or(false), "user": config.user.clone().unwrap_or_default()},
    })))
}

async fn resize(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<super::containers::ResizeQuery>) -> DockerResult<Response> {
    let exec = exec_record(&docker, &id)?;
    docker.core.resize_terminal(NAMESPACE, &exec.container_id, &exec.id, query.w.unwrap_or(80), query.h.unwrap_or(24)).await?;
    Ok(StatusCode::OK.into_response())
}
