//! The CRI RuntimeService: pods, containers, exec, stats and events.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::*;
use super::{status, NAMESPACE, RUNTIME_API_VERSION, RUNTIME_NAME};
use crate::core::task_io::StdioWanted;
use crate::core::Core;
use crate::streaming::{StreamRequest, Streaming};

type Reply<T> = Result<Response<T>, Status>;

pub struct Runtime {
    core: Arc<Core>,
    streaming: Arc<Streaming>,
}

impl Runtime {
    pub fn new(core: Arc<Core>, streaming: Arc<Streaming>) -> Self {
        Runtime { core, streaming }
    }

    /// A streaming URL for a request on a running container.
    fn container_stream_url(&self, container_id: &str, request: impl FnOnce(String) -> StreamRequest) -> Result<String, Status> {
        let record = self.core.container(NAMESPACE, container_id).map_err(status)?;
        if record.state != crate::core::ContainerState::Running {
            return Err(Status::failed_precondition(format!("container {} is not running", record.id)));
        }
        self.streaming.url_for(request(record.id)).map_err(status)
    }

    async fn container_stats_of(&self, record: &crate::core::ContainerRecord) -> cri::ContainerStats {
        let usage = self.core.container_usage(record).await.unwrap_or_default();
        container_stats(record, &usage, &self.core.paths.root.display().to_string())
    }

    async fn sandbox_stats(&self, record: &crate::core::SandboxRecord) -> Result<cri::PodSandboxStats, Status> {
        let (total, each) = self.core.sandbox_usage(NAMESPACE, &record.id).await.map_err(status)?;
        let root = self.core.paths.root.display().to_string();
        let metadata = pod_sandbox(record).metadata;
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: record.id.clone(),
                metadata,
                labels: pod_sandbox(record).labels,
                annotations: pod_sandbox(record).annotations,
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cpu_usage(&total)),
                memory: Some(memory_usage(&total)),
                network: None,
                process: Some(cri::ProcessUsage { timestamp: total.timestamp_nanos, process_count: u64_value(total.processes) }),
                containers: each.iter().map(|(c, usage)| container_stats(c, usage, &root)).collect(),
            }),
            windows: None,
        })
    }
}

fn event_type(kind: crate::core::events::LifecycleEvent) -> i32 {
    use crate::core::events::LifecycleEvent::*;
    (match kind {
        Created => cri::ContainerEventType::ContainerCreatedEvent,
        Started => cri::ContainerEventType::ContainerStartedEvent,
        Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }) as i32
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(&self, _: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn run_pod_sandbox(&self, request: Request<cri::RunPodSandboxRequest>) -> Reply<cri::RunPodSandboxResponse> {
        let request = request.into_inner();
        let config = request.config.ok_or_else(|| Status::invalid_argument("RunPodSandbox needs a config"))?;
        self.core.config.runtime_for_handler(&request.runtime_handler).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let spec = sandbox_spec(&config, &request.runtime_handler).map_err(Status::invalid_argument)?;
        let id = self.core.run_sandbox(NAMESPACE, spec).await.map_err(status)?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(&self, request: Request<cri::StopPodSandboxRequest>) -> Reply<cri::StopPodSandboxResponse> {
        self.core.stop_sandbox(NAMESPACE, &request.into_inner().pod_sandbox_id).await.map_err(status)?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(&self, request: Request<cri::RemovePodSandboxRequest>) -> Reply<cri::RemovePodSandboxResponse> {
        self.core.remove_sandbox(NAMESPACE, &request.into_inner().pod_sandbox_id).await.map_err(status)?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(&self, request: Request<cri::PodSandboxStatusRequest>) -> Reply<cri::PodSandboxStatusResponse> {
        let request = request.into_inner();
        let record = self.core.sandbox(NAMESPACE, &request.pod_sandbox_id).map_err(status)?;
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let verbose = serde_json::json!({ "netns": record.netns, "ipcns": record.ipcns, "utsns": record.utsns, "podInit": record.pod_init, "spec": record.spec });
            info.insert("info".to_string(), verbose.to_string());
        }
        let containers = self.core.containers_of_sandbox(NAMESPACE, &record.id).map_err(status)?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(pod_sandbox_status(&record)),
            info,
            containers_statuses: containers.iter().map(container_status).collect(),
            timestamp: crate::core::now_nanos(),
        }))
    }

    async fn list_pod_sandbox(&self, request: Request<cri::ListPodSandboxRequest>) -> Reply<cri::ListPodSandboxResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let records = self.core.list_sandboxes(NAMESPACE).map_err(status)?;
        let items = records
            .iter()
            .filter(|r| filter.id.is_empty() || r.id.starts_with(&filter.id))
            .filter(|r| filter.state.as_ref().is_none_or(|s| pod_sandbox(r).state == s.state))
            .filter(|r| labels_match(&filter.label_selector, &r.spec.labels))
            .map(pod_sandbox)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(&self, request: Request<cri::CreateContainerRequest>) -> Reply<cri::CreateContainerResponse> {
        let request = request.into_inner();
        let config = request.config.ok_or_else(|| Status::invalid_argument("CreateContainer needs a config"))?;
        if config.mounts.iter().any(|m| m.image.as_ref().is_some_and(|i| !i.image.is_empty())) {
            return Err(Status::unimplemented("image volumes (a mount of an image) are not supported by berth yet"));
        }
        let sandbox = self.core.sandbox(NAMESPACE, &request.pod_sandbox_id).map_err(status)?;
        let spec = container_spec(&config, &sandbox).map_err(Status::invalid_argument)?;
        let id = self.core.create_container(NAMESPACE, spec).await.map_err(status)?;
        Ok(Response::new(cri::CreateContainerResponse { container_id: id }))
    }

    async fn start_container(&self, request: Request<cri::StartContainerRequest>) -> Reply<cri::StartContainerResponse> {
        self.core.start_container(NAMESPACE, &request.into_inner().container_id).await.map_err(status)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(&self, request: Request<cri::StopContainerRequest>) -> Reply<cri::StopContainerResponse> {
        let request = request.into_inner();
        self.core.stop_container(NAMESPACE, &request.container_id, request.timeout).await.map_err(status)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(&self, request: Request<cri::RemoveContainerRequest>) -> Reply<cri::RemoveContainerResponse> {
        self.core.remove_container(NAMESPACE, &request.into_inner().container_id).await.map_err(status)?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(&self, request: Request<cri::ListContainersRequest>) -> Reply<cri::ListContainersResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let records = self.core.list_containers(NAMESPACE).map_err(status)?;
        let containers = records
            .iter()
            .filter(|r| filter.id.is_empty() || r.id.starts_with(&filter.id))
            .filter(|r| filter.pod_sandbox_id.is_empty() || r.spec.sandbox_id.starts_with(&filter.pod_sandbox_id))
            .filter(|r| filter.state.as_ref().is_none_or(|s| container_state(r.state) == s.state))
            .filter(|r| labels_match(&filter.label_selector, &r.spec.labels))
            .map(container)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(&self, request: Request<cri::ContainerStatusRequest>) -> Reply<cri::ContainerStatusResponse> {
        let request = request.into_inner();
        let record = self.core.container(NAMESPACE, &request.container_id).map_err(status)?;
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let verbose = serde_json::json!({ "pid": record.pid, "bundle": record.bundle, "shim": record.shim_address, "spec": record.spec });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(Response::new(cri::ContainerStatusResponse { status: Some(container_status(&record)), info }))
    }

    async fn update_container_resources(&self, request: Request<cri::UpdateContainerResourcesRequest>) -> Reply<cri::UpdateContainerResourcesResponse> {
        let request = request.into_inner();
        let resources = request.linux.as_ref().map(resources).unwrap_or_default();
        self.core.update_container_resources(NAMESPACE, &request.container_id, resources).await.map_err(status)?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(&self, request: Request<cri::ReopenContainerLogRequest>) -> Reply<cri::ReopenContainerLogResponse> {
        self.core.reopen_container_log(NAMESPACE, &request.into_inner().container_id).await.map_err(status)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, request: Request<cri::ExecSyncRequest>) -> Reply<cri::ExecSyncResponse> {
        let request = request.into_inner();
        let timeout = Duration::from_secs(request.timeout.max(0) as u64);
        let output = self.core.exec_sync(NAMESPACE, &request.container_id, &request.cmd, timeout).await.map_err(status)?;
        Ok(Response::new(cri::ExecSyncResponse { stdout: output.stdout, stderr: output.stderr, exit_code: output.exit_code }))
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let request = request.into_inner();
        if request.cmd.is_empty() {
            return Err(Status::invalid_argument("exec needs a command"));
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(Status::invalid_argument("one of stdin, stdout and stderr must be set"));
        }
        let stdio = StdioWanted { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty };
        let url = self.container_stream_url(&request.container_id, |container_id| StreamRequest::Exec { container_id, command: request.cmd.clone(), stdio })?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        let request = request.into_inner();
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(Status::invalid_argument("one of stdin, stdout and stderr must be set"));
        }
        let stdio = StdioWanted { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty };
        let url = self.container_stream_url(&request.container_id, |container_id| StreamRequest::Attach { container_id, stdio })?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(&self, request: Request<cri::PortForwardRequest>) -> Reply<cri::PortForwardResponse> {
        let request = request.into_inner();
        let sandbox = self.core.sandbox(NAMESPACE, &request.pod_sandbox_id).map_err(status)?;
        self.core.pod_network(NAMESPACE, &sandbox.id).map_err(status)?;
        let url = self.streaming.url_for(StreamRequest::PortForward { pod_id: sandbox.id }).map_err(status)?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(&self, request: Request<cri::ContainerStatsRequest>) -> Reply<cri::ContainerStatsResponse> {
        let record = self.core.container(NAMESPACE, &request.into_inner().container_id).map_err(status)?;
        Ok(Response::new(cri::ContainerStatsResponse { stats: Some(self.container_stats_of(&record).await) }))
    }

    async fn list_container_stats(&self, request: Request<cri::ListContainerStatsRequest>) -> Reply<cri::ListContainerStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let records = self.core.list_containers(NAMESPACE).map_err(status)?;
        let mut stats = Vec::new();
        for record in records.iter().filter(|r| {
            (filter.id.is_empty() || r.id.starts_with(&filter.id))
                && (filter.pod_sandbox_id.is_empty() || r.spec.sandbox_id.starts_with(&filter.pod_sandbox_id))
                && labels_match(&filter.label_selector, &r.spec.labels)
        }) {
            stats.push(self.container_stats_of(record).await);
        }
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(&self, request: Request<cri::PodSandboxStatsRequest>) -> Reply<cri::PodSandboxStatsResponse> {
        let record = self.core.sandbox(NAMESPACE, &request.into_inner().pod_sandbox_id).map_err(status)?;
        Ok(Response::new(cri::PodSandboxStatsResponse { stats: Some(self.sandbox_stats(&record).await?) }))
    }

    async fn list_pod_sandbox_stats(&self, request: Request<cri::ListPodSandboxStatsRequest>) -> Reply<cri::ListPodSandboxStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let records = self.core.list_sandboxes(NAMESPACE).map_err(status)?;
        let mut stats = Vec::new();
        for record in records.iter().filter(|r| (filter.id.is_empty() || r.id.starts_with(&filter.id)) && labels_match(&filter.label_selector, &r.spec.labels)) {
            stats.push(self.sandbox_stats(record).await?);
        }
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(&self, request: Request<cri::UpdateRuntimeConfigRequest>) -> Reply<cri::UpdateRuntimeConfigResponse> {
        let cidr = request.into_inner().runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
        let changed = self.core.network.set_pod_cidr(&cidr).await.map_err(|e| status(e.into()))?;
        tracing::info!(pod_cidr = %cidr, changed, "the kubelet set the pod CIDR");
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, request: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        // Each condition is checked at each call: what is missing is named.
        let condition = |kind: &str, readiness: Result<(), String>, reason: &str| cri::RuntimeCondition {
            r#type: kind.into(),
            status: readiness.is_ok(),
            reason: if readiness.is_ok() { String::new() } else { reason.into() },
            message: readiness.err().unwrap_or_default(),
        };
        let conditions = vec![
            condition("RuntimeReady", self.core.shims.check_binary(), "ShimMissing"),
            condition("NetworkReady", self.core.network.readiness(), "NetworkPluginNotReady"),
        ];
        let mut info = std::collections::HashMap::new();
        if request.into_inner().verbose {
            let config = serde_json::json!({ "root": self.core.paths.root, "state": self.core.paths.state, "cgroupDriver": self.core.config.cgroup_driver });
            info.insert("config".to_string(), config.to_string());
        }
        let handlers = self
            .core
            .handler_features()
            .await
            .into_iter()
            .map(|(name, found)| cri::RuntimeHandler {
                name,
                features: Some(cri::RuntimeHandlerFeatures { recursive_read_only_mounts: found.recursive_read_only_mounts, user_namespaces: found.user_namespaces }),
            })
            .collect();
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers: handlers,
            features: Some(cri::RuntimeFeatures { supplemental_groups_policy: true }),
        }))
    }

    async fn checkpoint_container(&self, _: Request<cri::CheckpointContainerRequest>) -> Reply<cri::CheckpointContainerResponse> {
        Err(Status::unimplemented("CheckpointContainer is not supported by berth"))
    }

    type GetContainerEventsStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn get_container_events(&self, _: Request<cri::GetEventsRequest>) -> Reply<Self::GetContainerEventsStream> {
        let mut receiver = self.core.events.subscribe();
        let core = self.core.clone();
        let stream = async_stream_of(move |sender| async move {
            loop {
                let event = match receiver.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                };
                if event.namespace != NAMESPACE {
                    continue;
                }
                let sandbox = core.sandbox(NAMESPACE, &event.sandbox_id).ok();
                let statuses = core.container(NAMESPACE, &event.container_id).ok().map(|r| vec![container_status(&r)]).unwrap_or_default();
                let response = cri::ContainerEventResponse {
                    container_id: event.container_id.clone(),
                    container_event_type: event_type(event.kind),
                    created_at: event.at_nanos,
                    pod_sandbox_status: sandbox.as_ref().map(pod_sandbox_status),
                    containers_statuses: statuses,
                };
                if sender.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_metric_descriptors(&self, _: Request<cri::ListMetricDescriptorsRequest>) -> Reply<cri::ListMetricDescriptorsResponse> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse { descriptors: Vec::new() }))
    }

    async fn list_pod_sandbox_metrics(&self, _: Request<cri::ListPodSandboxMetricsRequest>) -> Reply<cri::ListPodSandboxMetricsResponse> {
        Ok(Response::new(cri::ListPodSandboxMetricsResponse { pod_metrics: Vec::new() }))
    }

    async fn runtime_config(&self, _: Request<cri::RuntimeConfigRequest>) -> Reply<cri::RuntimeConfigResponse> {
        let driver = match self.core.config.cgroup_driver.as_str() {
            "systemd" => cri::CgroupDriver::Systemd,
            _ => cri::CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(cri::RuntimeConfigResponse { linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: driver as i32 }) }))
    }
}

/// A stream fed by a task through a bounded channel.
fn async_stream_of<F, Fut>(producer: F) -> Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<cri::ContainerEventResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(producer(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

