//! Processes whose stdio a front door serves itself (Docker's attach and exec): the
//! FIFO paths handed to the shim, exec'd processes started and waited for apart,
//! signals, terminal resizes, stdin closing, pause and resume, and the process list.
use std::path::Path;

use containerd_shim_protos::api::{
    CloseIORequest, DeleteRequest, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest, ResizePtyRequest, ResumeRequest, StartRequest, WaitRequest,
};
use containerd_shim_protos::shim_async::TaskClient;
use protobuf::well_known_types::any::Any;

use super::*;
use crate::task::context;

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// FIFO paths for a process's stdio; an empty path is not connected.
#[derive(Debug, Clone, Default)]
pub struct TaskIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
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

fn exec_spec(bundle: &Path, process: &ExecProcess, terminal: bool) -> CoreResult<Any> {
    let config = std::fs::read(bundle.join("config.json")).map_err(io_error("reading the container's config.json"))?;
    let config: serde_json::Value = serde_json::from_slice(&config).map_err(|e| CoreError::Internal(e.to_string()))?;
    let mut spec = config.get("process").cloned().unwrap_or_default();
    spec["args"] = serde_json::json!(process.args);
    spec["terminal"] = serde_json::json!(terminal);
    if !process.env.is_empty() {
        let mut env: Vec<serde_json::Value> = spec["env"].as_array().cloned().unwrap_or_default();
        env.extend(process.env.iter().map(|e| serde_json::json!(e)));
        spec["env"] = serde_json::Value::Array(env);
    }
    if let Some((uid, gid)) = process.user {
        spec["user"] = serde_json::json!({"uid": uid, "gid": gid});
    }
    if !process.working_dir.is_empty() {
        spec["cwd"] = serde_json::json!(process.working_dir);
    }
    Ok(Any { type_url: PROCESS_TYPE_URL.into(), value: spec.to_string().into_bytes(), ..Default::default() })
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

    /// Creates and starts `exec_id` in the running container; returns its pid.
    pub async fn exec_start(&self, namespace: &str, id: &str, exec_id: &str, process: &ExecProcess, io: &TaskIo) -> CoreResult<u32> {
        if process.args.is_empty() {
            return Err(CoreError::InvalidArgument("exec needs a command".into()));
        }
        let (record, client) = self.running_task(namespace, id).await?;
        let request = ExecProcessRequest {
            id: record.id.clone(),
            exec_id: exec_id.into(),
            terminal: io.terminal,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            spec: Some(exec_spec(Path::new(&record.bundle), process, io.terminal)?).into(),
            ..Default::default()
        };
        client.exec(context(), &request).await?;
        match client.start(context(), &StartRequest { id: record.id.clone(), exec_id: exec_id.into(), ..Default::default() }).await {
            Ok(started) => Ok(started.pid),
            Err(error) => {
                let _ = client.delete(context(), &DeleteRequest { id: record.id.clone(), exec_id: exec_id.into(), ..Default::default() }).await;
                Err(error.into())
            }
        }
    }

    /// Waits for an exec'd process, deletes it from the shim and returns its exit code.
    pub async fn exec_wait(&self, namespace: &str, id: &str, exec_id: &str) -> CoreResult<i32> {
        let record = self.container(namespace, id)?;
        let client = self.shims.client(&record.shim_address).await?;
        let wait = WaitRequest { id: record.id.clone(), exec_id: exec_id.into(), ..Default::default() };
        let exit = client.wait(ttrpc::context::Context::default(), &wait).await?;
        let _ = client.delete(context(), &DeleteRequest { id: record.id.clone(), exec_id: exec_id.into(), ..Default::default() }).await;
        Ok(exit.exit_status as i32)
    }

    /// Sends `signal` to the container's init (or to all its processes).
    pub async fn signal_container(&self, namespace: &str, id: &str, signal: u32, all: bool) -> CoreResult<()> {
        let (record, client) = self.running_task(namespace, id).await?;
        client.kill(context(), &KillRequest { id: record.id, signal, all, ..Default::default() }).await?;
        Ok(())
    }

    /// Resizes the terminal of the container's init (empty `exec_id`) or of an exec.
    pub async fn resize_terminal(&self, namespace: &str, id: &str, exec_id: &str, width: u32, height: u32) -> CoreResult<()> {
        let (record, client) = self.running_task(namespace, id).await?;
        let request = ResizePtyRequest { id: record.id, exec_id: exec_id.into(), width, height, ..Default::default() };
        client.resize_pty(context(), &request).await?;
        Ok(())
    }

    /// Closes a process's stdin (its reader sees the end).
    pub async fn close_stdin(&self, namespace: &str, id: &str, exec_id: &str) -> CoreResult<()> {
        let (record, client) = self.running_task(namespace, id).await?;
        client.close_io(context(), &CloseIORequest { id: record.id, exec_id: exec_id.into(), stdin: true, ..Default::default() }).await?;
        Ok(())
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
}

impl Core {
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
