//! The ttrpc Task service: each RPC decoded, handed to the shim, and answered. Work on
//! a container of an external runtime, which runs that runtime's processes, goes to a
//! blocking thread, so that the shim goes on serving meanwhile.
//! Registered under both `containerd.task.v2.Task` (containerd 1.6) and
//! `containerd.task.v3.Task` (containerd 2.x): the messages are the same.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};
use containerd_shim_protos::shim_async::{create_task, Task};
use containerd_shim_protos::types::task::ProcessInfo;
use protobuf::well_known_types::empty::Empty;
use protobuf::MessageField;
use ttrpc::asynchronous::TtrpcContext;

use crate::error::ShimError;
use crate::process::StdioPaths;
use crate::task::Shim;
use crate::{stats, timefmt};

type RpcResult<T> = ttrpc::Result<T>;

pub struct Service(pub Arc<Shim>);

/// The Task service under both of its names.
pub fn services(shim: Arc<Shim>) -> HashMap<String, ttrpc::asynchronous::Service> {
    let service: Arc<dyn Task + Send + Sync> = Arc::new(Service(shim));
    let mut all = create_task(service.clone());
    for (name, methods) in create_task(service) {
        all.insert(name.replace(".v3.", ".v2."), methods);
    }
    all
}

fn ok<T>(result: Result<T, ShimError>) -> RpcResult<T> {
    result.map_err(ttrpc::Error::from)
}

impl Service {
    /// Runs `work` on the shim's thread for berth's own runtime. For an external one,
    /// on a blocking thread as an operation in flight (see `early_exits`), reaping what
    /// exited meanwhile once the operation has recorded its pids.
    async fn run<T: Send + 'static>(&self, external: bool, work: impl FnOnce(&Shim) -> Result<T, ShimError> + Send + 'static) -> RpcResult<T> {
        if !external {
            return ok(work(&self.0));
        }
        let shim = self.0.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let flight = shim.early_exits.begin();
            let result = work(&shim);
            shim.reap();
            drop(flight);
            result
        })
        .await;
        ok(joined.unwrap_or_else(|e| Err(ShimError::io("the external runtime's thread", std::io::Error::other(e.to_string())))))
    }

    fn external(&self, id: &str) -> bool {
        self.0.with(id, |c| Ok(c.external.is_some())).unwrap_or(false)
    }
}

#[async_trait]
impl Task for Service {
    async fn create(&self, _: &TtrpcContext, request: CreateTaskRequest) -> RpcResult<CreateTaskResponse> {
        if !request.checkpoint.is_empty() {
            return ok(Err(ShimError::Unimplemented("restoring from a checkpoint is not supported by berth-shim".into())));
        }
        let external = crate::backend::requested_binary(request.options.as_ref()).ok().flatten().is_some();
        let pid = self.run(external, move |shim| shim.create(&request)).await?;
        Ok(CreateTaskResponse { pid, ..Default::default() })
    }

    async fn start(&self, _: &TtrpcContext, request: StartRequest) -> RpcResult<StartResponse> {
        let pid = self.run(self.external(&request.id), move |shim| shim.start(&request.id, &request.exec_id)).await?;
        Ok(StartResponse { pid, ..Default::default() })
    }

    async fn delete(&self, _: &TtrpcContext, request: DeleteRequest) -> RpcResult<DeleteResponse> {
        let (pid, exit) = self.run(self.external(&request.id), move |shim| shim.delete(&request.id, &request.exec_id)).await?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timefmt::timestamp(exit.at_nanos)),
            ..Default::default()
        })
    }

    async fn kill(&self, _: &TtrpcContext, request: KillRequest) -> RpcResult<Empty> {
        let external = self.external(&request.id);
        self.run(external, move |shim| shim.kill(&request.id, &request.exec_id, request.signal, request.all)).await?;
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, request: ExecProcessRequest) -> RpcResult<Empty> {
        let value = request.spec.as_ref().map(|any| any.value.as_slice()).unwrap_or_default();
        let spec: oci_spec::runtime::Process = ok(serde_json::from_slice(value)
            .map_err(|e| ShimError::Invalid(format!("exec {}: process spec: {e}", request.exec_id))))?;
        let paths = StdioPaths { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal };
        ok(self.0.add_exec(&request.id, &request.exec_id, paths, spec))?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, request: ResizePtyRequest) -> RpcResult<Empty> {
        ok(self.0.resize(&request.id, &request.exec_id, request.width, request.height))?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, request: CloseIORequest) -> RpcResult<Empty> {
        if request.stdin {
            let close = ok(self.0.with(&request.id, |c| Ok(c.process(&request.exec_id)?.io.close_stdin.clone())))?;
            if let Some(close) = close {
                close.notify_one();
            }
        }
        Ok(Empty::new())
    }

    async fn pause(&self, _: &TtrpcContext, request: PauseRequest) -> RpcResult<Empty> {
        ok(self.0.with(&request.id, |_| Ok(())))?;
        let external = self.external(&request.id);
        self.run(external, move |shim| shim.with_backend(&request.id, |backend| backend.pause(&request.id)).map(|_| request.id)).await
            .map(|id| self.0.publisher.publish(&TaskPaused { container_id: id, ..Default::default() }))?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, request: ResumeRequest) -> RpcResult<Empty> {
        ok(self.0.with(&request.id, |_| Ok(())))?;
        let external = self.external(&request.id);
        self.run(external, move |shim| shim.with_backend(&request.id, |backend| backend.resume(&request.id)).map(|_| request.id)).await
            .map(|id| self.0.publisher.publish(&TaskResumed { container_id: id, ..Default::default() }))?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _: &TtrpcContext, request: CheckpointTaskRequest) -> RpcResult<Empty> {
        ok(Err(ShimError::Unimplemented(format!("checkpoint of {}: berth-shim does not support checkpoint/restore (no CRIU integration)", request.id))))
    }

    async fn update(&self, _: &TtrpcContext, request: UpdateTaskRequest) -> RpcResult<Empty> {
        let external = self.external(&request.id);
        self.run(external, move |shim| {
            let resources = request.resources.as_ref().map(|any| any.value.as_slice());
            shim.update(&request.id, resources, &request.annotations)
        })
        .await?;
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, request: WaitRequest) -> RpcResult<WaitResponse> {
        let mut exit = ok(self.0.with(&request.id, |c| Ok(c.process(&request.exec_id)?.exit.subscribe())))?;
        let exit = match exit.wait_for(|e| e.is_some()).await {
            Ok(exit) => (*exit).unwrap_or(crate::process::Exit { status: 255, at_nanos: 0 }),
            Err(_) => return ok(Err(ShimError::NoProcess { id: request.id, exec_id: request.exec_id })),
        };
        Ok(WaitResponse { exit_status: exit.status, exited_at: MessageField::some(timefmt::timestamp(exit.at_nanos)), ..Default::default() })
    }

    async fn stats(&self, _: &TtrpcContext, request: StatsRequest) -> RpcResult<StatsResponse> {
        let pid = ok(self.0.with(&request.id, |c| Ok(c.init.pid)))?;
        let stats = ok(stats::collect(pid))?;
        Ok(StatsResponse { stats: MessageField::some(stats), ..Default::default() })
    }

    async fn pids(&self, _: &TtrpcContext, request: PidsRequest) -> RpcResult<PidsResponse> {
        ok(self.0.with(&request.id, |_| Ok(())))?;
        let external = self.external(&request.id);
        let pids = self.run(external, move |shim| shim.with_backend(&request.id, |backend| backend.pids(&request.id))).await?;
        let processes = pids.into_iter().map(|pid| ProcessInfo { pid: pid as u32, ..Default::default() }).collect();
        Ok(PidsResponse { processes, ..Default::default() })
    }

    async fn state(&self, _: &TtrpcContext, request: StateRequest) -> RpcResult<StateResponse> {
        self.run(self.external(&request.id), move |shim| shim.state(&request.id, &request.exec_id)).await
    }

    async fn connect(&self, _: &TtrpcContext, request: ConnectRequest) -> RpcResult<ConnectResponse> {
        let task_pid = self.0.with(&request.id, |c| Ok(c.init.pid as u32)).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: format!("berth-shim {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, request: ShutdownRequest) -> RpcResult<Empty> {
        if request.now || self.0.lock().is_empty() {
            let shim = self.0.clone();
            // Answer first, then stop, unless a container was created in the meantime
            // (a daemon that found this shim still serving may have just used it).
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                if request.now || shim.lock().is_empty() {
                    shim.shutdown.notify_one();
                }
            });
        }
        Ok(Empty::new())
    }
}
