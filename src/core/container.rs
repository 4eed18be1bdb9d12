//! Containers: created from an image into a pod sandbox (a writable snapshot and a
//! bundle with its spec), started through the pod's shim, stopped with a grace period,
//! and removed with everything they held.
use std::path::Path;
use std::time::Duration;

use containerd_shim_protos::api::{ConnectRequest, CreateTaskRequest, DeleteRequest, KillRequest, ShutdownRequest, StartRequest, WaitRequest};
use containerd_shim_protos::types::mount::Mount;
use protobuf::MessageField;

use super::events::{ContainerEvent, LifecycleEvent};
use super::intents::{Intent, Operation};
use super::*;
use crate::private_fs;
use crate::spec::{self, SpecInputs};
use crate::task::{context, ProcessExit};

/// How long a removal waits for a shim it asked to exit to be gone.
const SHIM_EXIT_GRACE: Duration = Duration::from_secs(2);

impl Core {
    fn publish(&self, record: &ContainerRecord, kind: LifecycleEvent) {
        self.events.publish(ContainerEvent {
            namespace: record.namespace.clone(),
            container_id: record.id.clone(),
            sandbox_id: record.spec.sandbox_id.clone(),
            kind,
            at_nanos: now_nanos(),
        });
    }

    pub(crate) fn save_container(&self, record: &ContainerRecord) -> CoreResult<()> {
        self.store.write(|txn| txn.put(CONTAINERS, &record_key(&record.namespace, &record.id), record))?;
        Ok(())
    }

    pub fn list_containers(&self, namespace: &str) -> CoreResult<Vec<ContainerRecord>> {
        let prefix = format!("{namespace}/");
        let records = self.store.read(|txn| txn.list_prefix(CONTAINERS, &prefix))?;
        Ok(records.into_iter().map(|(_, record)| record).filter(|r| r.complete).collect())
    }

    pub fn containers_of_sandbox(&self, namespace: &str, sandbox_id: &str) -> CoreResult<Vec<ContainerRecord>> {
        let all = self.list_containers(namespace)?;
        Ok(all.into_iter().filter(|c| c.spec.sandbox_id == sandbox_id).collect())
    }

    /// A container by id or unique id prefix (a full id is read alone).
    pub fn container(&self, namespace: &str, id: &str) -> CoreResult<ContainerRecord> {
        let exact = self.store.read(|txn| txn.get::<ContainerRecord>(CONTAINERS, &record_key(namespace, id)))?;
        if let Some(record) = exact.filter(|r| r.complete && r.id == id) {
            return Ok(record);
        }
        let records = self.list_containers(namespace)?;
        let id = ids::resolve("container", id, records.iter().map(|r| r.id.as_str()))?;
        records
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| CoreError::NotFound(format!("container {id} not found")))
    }

    /// Creates a container (not started) and returns its id.
    pub async fn create_container(&self, namespace: &str, spec: ContainerSpec) -> CoreResult<String> {
        if spec.name.is_empty() {
            return Err(CoreError::InvalidArgument("the container name must not be empty".into()));
        }
        limits::check_labels("labels", &spec.labels)?;
        limits::check_labels("annotations", &spec.annotations)?;
        limits::check_reserved_annotations(&spec.annotations)?;
        let sandbox = self.sandbox(namespace, &spec.sandbox_id)?;
        limits::check_log_path(&spec.log_path, &sandbox.spec.log_directory)?;
        if sandbox.state != SandboxState::Ready {
            return Err(CoreError::FailedPrecondition(format!("sandbox {} is not ready", sandbox.id)));
        }
        let id = ids::new_id()?;
        let _guard = self.lock_pod(namespace, &sandbox.id).await;
        let mut record = self.reserve_container(namespace, &id, spec, &sandbox)?;
        crash_point!("create_container.after_reserve");
        match self.build_container(&mut record, &sandbox).await {
            Ok(()) => {
                record.complete = true;
                self.save_container(&record)?;
                self.publish(&record, LifecycleEvent::Created);
                Ok(id)
            }
            Err(error) => {
                self.discard_container(&record).await;
                Err(error)
            }
        }
    }

    fn reserve_container(&self, namespace: &str, id: &str, spec: ContainerSpec, sandbox: &SandboxRecord) -> CoreResult<ContainerRecord> {
        let record = ContainerRecord {
            id: id.to_string(),
            namespace: namespace.to_string(),
            image_id: String::new(),
            image_ref: String::new(),
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            shim_address: String::new(),
            bundle: self.paths.bundle(id).display().to_string(),
            snapshot_key: record_key(namespace, id),
            complete: false,
            identity: None,
            spec: ContainerSpec { sandbox_id: sandbox.id.clone(), ..spec },
        };
        self.claim_name(CONTAINERS, namespace, "container", &record.spec.name, id, &record)?;
        Ok(record)
    }

    async fn build_container(&self, record: &mut ContainerRecord, sandbox: &SandboxRecord) -> CoreResult<()> {
        let bundle = Path::new(&record.bundle).to_path_buf();
        private_fs::create_private_dir(&bundle).map_err(io_error(format!("creating {}", bundle.display())))?;
        std::fs::create_dir_all(bundle.join("rootfs")).map_err(io_error(format!("creating {}", bundle.display())))?;
        if sandbox.spec.user_namespace.is_some() {
            self.open_way_for_user_namespace(&bundle, &sandbox.id)?;
        }
        let prepared = self.prepare_rootfs(&record.spec.image, &record.snapshot_key, sandbox.spec.user_namespace.as_ref()).await?;
        crash_point!("create_container.after_snapshot");
        record.image_id = prepared.image_id.clone();
        record.image_ref = prepared.image_ref.clone();
        let pid_namespace_path = self.pid_namespace_of(record, sandbox)?;
        let cgroups_path = cgroups_path(&sandbox.spec.cgroup_parent, &self.config.cgroup_parent, &record.id)?;
        self.claim_cgroup_parent(sandbox, &cgroups_path)?;
        let sandbox_dir = self.paths.sandbox_dir(&sandbox.id);
        let etc_files = ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|name| (format!("/etc/{name}"), sandbox_dir.join(name).display().to_string()))
            .collect();
        let inputs = SpecInputs {
            container_id: &record.id,
            container: &record.spec,
            sandbox,
            image: &prepared.defaults,
            cgroups_path: cgroups_path.clone(),
            etc_files,
            pid_namespace_path,
        };
        let mut spec = spec::build(&inputs).map_err(|error| CoreError::InvalidArgument(error.to_string()))?;
        record.identity = spec.pointer("/process/user").and_then(|user| serde_json::from_value::<OciUser>(user.clone()).ok()).map(OciUser::into_identity);
        if record.spec.log_path.is_empty() {
            if let Some(private) = super::task_io::attach::output_log(record) {
                spec["annotations"][spec::LOG_PATH_ANNOTATION] = serde_json::json!(private.display().to_string());
                spec["annotations"][spec::LOG_ROTATE_BYTES_ANNOTATION] = serde_json::json!(super::task_io::ATTACH_LOG_ROTATE_BYTES.to_string());
            }
        }
        let cwd = spec.pointer("/process/cwd").and_then(|v| v.as_str()).unwrap_or("/");
        ensure_working_dir(&prepared.defaults.layers, cwd)?;
        let text = serde_json::to_vec_pretty(&spec).map_err(|e| CoreError::Internal(e.to_string()))?;
        let mounts = serde_json::to_vec(&prepared.mounts).map_err(|e| CoreError::Internal(e.to_string()))?;
        private_fs::write_private_file(&bundle.join("config.json"), &text).map_err(io_error("writing config.json"))?;
        private_fs::write_private_file(&bundle.join("rootfs.json"), &mounts).map_err(io_error("writing rootfs.json"))?;
        crash_point!("create_container.after_bundle");
        Ok(())
    }

    /// A container in its pod's user namespace sets itself up as that namespace's root,
    /// an unprivileged id on the host: it must pass through (not list) the directories
    /// that lead to its bundle and to its pod's files (as containerd's bundles for user
    /// namespaces are 0711). The files in them stay root's only.
    fn open_way_for_user_namespace(&self, bundle: &Path, sandbox_id: &str) -> CoreResult<()> {
        let sandbox_dir = self.paths.sandbox_dir(sandbox_id);
        let passable = [bundle.parent(), Some(bundle), sandbox_dir.parent(), Some(sandbox_dir.as_path())];
        for dir in passable.into_iter().flatten() {
            private_fs::set_mode(dir, 0o711).map_err(io_error(format!("letting the pod's user namespace through {}", dir.display())))?;
        }
        Ok(())
    }

    /// The PID namespace to join: the pod's shared one, or a target container's.
    fn pid_namespace_of(&self, record: &ContainerRecord, sandbox: &SandboxRecord) -> CoreResult<Option<String>> {
        match (record.spec.security.pid, &sandbox.pod_init) {
            (NamespaceMode::Pod, Some(init)) => return Ok(Some(init.pinned.clone())),
            (NamespaceMode::Target, _) => {}
            _ => return Ok(None),
        }
        let target = self.container(&record.namespace, &record.spec.security.pid_target)?;
        if target.state != ContainerState::Running || target.pid == 0 {
            return Err(CoreError::FailedPrecondition(format!("target container {} is not running", target.id)));
        }
        Ok(Some(format!("/proc/{}/ns/pid", target.pid)))
    }

    /// Drops a half-made or removed container's snapshot, bundle and record.
    pub(crate) async fn discard_container(&self, record: &ContainerRecord) {
        if let Err(error) = self.release_rootfs(&record.snapshot_key).await {
            tracing::warn!(container = %record.id, %error, "releasing the container's snapshot");
        }
        crash_point!("remove_container.after_snapshot");
        let _ = std::fs::remove_dir_all(&record.bundle);
        let forget = self.release_name(CONTAINERS, &record.namespace, "container", &record.spec.name, &record.id);
        if let Err(error) = forget {
            tracing::error!(container = %record.id, %error, "forgetting the container");
        }
    }

    /// Starts a created container through its pod's shim.
    pub async fn start_container(&self, namespace: &str, id: &str) -> CoreResult<()> {
        self.start_container_with_io(namespace, id, &super::task_io::TaskIo::default()).await
    }

    /// Starts a created container whose stdio goes to the FIFOs that `io` names.
    pub async fn start_container_with_io(&self, namespace: &str, id: &str, io: &super::task_io::TaskIo) -> CoreResult<()> {
        let (_guard, record) = self.lock_pod_of(namespace, id).await?;
        if record.state != ContainerState::Created {
            return Err(CoreError::FailedPrecondition(format!("container {} is not in the created state", record.id)));
        }
        let intent = Intent::new(Operation::StartContainer, namespace, &record.id);
        self.with_intent(intent, self.start_created(record, io)).await
    }

    async fn start_created(&self, mut record: ContainerRecord, io: &super::task_io::TaskIo) -> CoreResult<()> {
        crash_point!("start_container.after_intent");
        match self.start_task(&mut record, io).await {
            Ok(()) => {
                self.save_container(&record)?;
                self.publish(&record, LifecycleEvent::Started);
                Ok(())
            }
            Err(error) => {
                record.state = ContainerState::Exited;
                record.finished_at = now_nanos();
                record.exit_code = 128;
                record.reason = "StartError".into();
                record.message = error.to_string();
                self.save_container(&record)?;
                Err(error)
            }
        }
    }

    /// For a pod whose runtime handler names an external runc-compatible binary: the
    /// runc options that tell the shim to use it (what containerd's runc shim reads).
    fn runtime_options(&self, sandbox: &SandboxRecord) -> CoreResult<Option<protobuf::well_known_types::any::Any>> {
        let binary = self.config.runtime_for_handler(&sandbox.spec.runtime_handler).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        let Some(binary) = binary else { return Ok(None) };
        let options = containerd_shim_protos::shim::oci::Options { binary_name: binary.display().to_string(), ..Default::default() };
        let value = protobuf::Message::write_to_bytes(&options).map_err(|e| CoreError::Internal(format!("encoding the runc options: {e}")))?;
        Ok(Some(protobuf::well_known_types::any::Any { type_url: "containerd.runc.v1.Options".into(), value, ..Default::default() }))
    }

    async fn start_task(&self, record: &mut ContainerRecord, io: &super::task_io::TaskIo) -> CoreResult<()> {
        let bundle = Path::new(&record.bundle);
        let mounts = read_rootfs_mounts(bundle)?;
        let sandbox = self.sandbox(&record.namespace, &record.spec.sandbox_id)?;
        let options = self.runtime_options(&sandbox)?;
        let (address, client) = self.connect_shim(&record.id, bundle).await?;
        crash_point!("start_container.after_shim");
        record.shim_address = address.clone();
        if !sandbox.shims.contains(&address) {
            self.remember_shim(&sandbox, &address)?;
        }
        // The Docker door brings its own stdin; a CRI container asking for one gets a pipe.
        let stdin = match (io.stdin.is_empty(), record.spec.stdin) {
            (false, _) => io.stdin.clone(),
            (true, true) => super::task_io::attach::make_container_stdin(bundle)?,
            (true, false) => String::new(),
        };
        let request = CreateTaskRequest {
            id: record.id.clone(),
            bundle: record.bundle.clone(),
            rootfs: mounts.iter().map(RootfsMount::to_proto).collect(),
            terminal: record.spec.tty,
            stdin,
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            options: options.into(),
            ..Default::default()
        };
        let created = client.create(context(), &request).await;
        if let Err(error) = created {
            return Err(error.into());
        }
        crash_point!("start_container.after_create_task");
        let start = StartRequest { id: record.id.clone(), ..Default::default() };
        let started = client.start(context(), &start).await;
        let started = match started {
            Ok(started) => started,
            Err(error) => {
                let _ = client.delete(context(), &DeleteRequest { id: record.id.clone(), ..Default::default() }).await;
                return Err(error.into());
            }
        };
        record.pid = started.pid;
        record.state = ContainerState::Running;
        record.started_at = now_nanos();
        crash_point!("start_container.after_start_task");
        Ok(())
    }

    /// Starts (or finds) the pod's shim and connects to it. A shim that was just asked
    /// to exit may still answer `start` and then go away: then a new one is started.
    async fn connect_shim(&self, id: &str, bundle: &Path) -> CoreResult<(String, containerd_shim_protos::shim_async::TaskClient)> {
        let mut attempt = 0;
        loop {
            let address = self.shims.start_shim(id, bundle).await?;
            match self.shims.client(&address).await {
                Ok(client) => return Ok((address, client)),
                Err(error) if attempt >= 5 => return Err(error.into()),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
            }
        }
    }

    /// Asks the shim to exit if it serves no container any more (a pod's shim lives as
    /// long as the pod, so that no start races with its exit). The cached connection is
    /// dropped either way.
    /// When the shim goes, this returns once its process is gone (or after
    /// `SHIM_EXIT_GRACE`), so that a removed pod leaves no process behind.
    pub(crate) async fn shutdown_shim_if_idle(&self, address: &str) {
        let Ok(client) = self.shims.client(address).await else {
            self.shims.forget(address).await;
            return;
        };
        let connected = client.connect(context(), &ConnectRequest::default()).await;
        let shim_exit = connected.ok().and_then(|answer| ProcessExit::watch(answer.shim_pid).ok());
        let asked = client.shutdown(context(), &ShutdownRequest::default()).await;
        drop(client);
        self.shims.forget(address).await;
        if let (Ok(_), Some(shim_exit)) = (asked, shim_exit) {
            if !shim_exit.wait(SHIM_EXIT_GRACE).await {
                tracing::warn!(%address, "the shim was asked to exit and is still there");
            }
        }
    }

    /// Signals the container with SIGTERM, then SIGKILL after `timeout_seconds`; waits
    /// for its exit. A container that is not running (or missing) is left as it is.
    pub async fn stop_container(&self, namespace: &str, id: &str, timeout_seconds: i64) -> CoreResult<()> {
        let record = match self.container(namespace, id) {
            Ok(record) => record,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        if record.state != ContainerState::Running {
            return Ok(());
        }
        let client = match self.shims.client(&record.shim_address).await {
            Ok(client) => client,
            Err(_) => return self.reap_lost_container(&record).await,
        };
        let wait = WaitRequest { id: record.id.clone(), ..Default::default() };
        let waiting = client.wait(ttrpc::context::Context::default(), &wait);
        tokio::pin!(waiting);
        if timeout_seconds > 0 {
            self.signal(&client, &record.id, libc::SIGTERM as u32, false).await;
            if let Ok(exit) = tokio::time::timeout(Duration::from_secs(timeout_seconds as u64), &mut waiting).await {
                return self.settle_wait(&record, exit).await;
            }
        }
        self.signal(&client, &record.id, libc::SIGKILL as u32, true).await;
        let exit = waiting.await;
        self.settle_wait(&record, exit).await
    }

    /// Records what a stop's wait ended with: the exit, the exit the event handler
    /// recorded, or, when the shim's connection closed, the dead shim's cleanup.
    async fn settle_wait(&self, record: &ContainerRecord, exit: Result<containerd_shim_protos::api::WaitResponse, ttrpc::Error>) -> CoreResult<()> {
        match exit {
            Ok(exit) => self.record_exit(&record.namespace, &record.id, exit.exit_status, timestamp_nanos(&exit.exited_at)).await,
            Err(ttrpc::Error::RpcStatus(status)) if status.code() == ttrpc::Code::NOT_FOUND => {
                self.settle_deleted_task(&record.namespace, &record.id).await
            }
            Err(error) if crate::task::connection_lost(&error) => {
                tracing::warn!(container = %record.id, %error, "the shim's connection closed during a stop");
                self.reap_lost_container(record).await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The shim no longer has the task: the exit event's handler deleted it (under the
    /// pod's lock, recording the exit). Once that is done, a record still running means
    /// the task went another way, and the shim's own record of the exit is used.
    async fn settle_deleted_task(&self, namespace: &str, id: &str) -> CoreResult<()> {
        match self.lock_pod_of(namespace, id).await {
            Ok((guard, _)) => drop(guard),
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        }
        match self.container(namespace, id) {
            Ok(record) if record.state == ContainerState::Running => self.reap_lost_container(&record).await,
            Ok(_) | Err(CoreError::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn signal(&self, client: &containerd_shim_protos::shim_async::TaskClient, id: &str, signal: u32, all: bool) {
        let request = KillRequest { id: id.to_string(), signal, all, ..Default::default() };
        if let Err(error) = client.kill(context(), &request).await {
            tracing::debug!(container = %id, %error, "signal");
        }
    }

    /// The OOM killer struck in a running container: its exit, reported next, gets the
    /// reason `OOMKilled`. A container of another namespace, or gone, is ignored.
    pub async fn mark_out_of_memory(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let (_guard, mut record) = match self.lock_pod_of(namespace, id).await {
            Ok(locked) => locked,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        if record.state == ContainerState::Running {
            record.reason = "OOMKilled".into();
            self.save_container(&record)?;
        }
        Ok(())
    }

    /// Records an init's exit (once) and deletes its task from the shim.
    pub async fn record_exit(&self, namespace: &str, id: &str, status: u32, at_nanos: i64) -> CoreResult<()> {
        let (_guard, mut record) = match self.lock_pod_of(namespace, id).await {
            Ok(locked) => locked,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        if record.state != ContainerState::Running {
            return Ok(());
        }
        if let Ok(client) = self.shims.client(&record.shim_address).await {
            let deleted = client.delete(context(), &DeleteRequest { id: record.id.clone(), ..Default::default() }).await;
            if let Err(error) = deleted {
                tracing::warn!(container = %record.id, %error, "deleting the exited task from its shim");
            }
        }
        record.state = ContainerState::Exited;
        record.exit_code = status as i32;
        record.finished_at = if at_nanos > 0 { at_nanos } else { now_nanos() };
        if record.reason.is_empty() {
            record.reason = if status == 0 { "Completed".into() } else { "Error".into() };
        }
        self.save_container(&record)?;
        self.publish(&record, LifecycleEvent::Stopped);
        Ok(())
    }

    /// The shim of a running container is gone: `berth-shim delete` kills what is left
    /// and reports the exit it recorded.
    /// Reaps run one at a time, and a container already reaped is left as it is.
    pub(crate) async fn reap_lost_container(&self, record: &ContainerRecord) -> CoreResult<()> {
        let _reaping = self.shims.reaping.lock().await;
        match self.container(&record.namespace, &record.id) {
            Ok(current) if current.is_live() => {}
            Ok(_) | Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        }
        self.shims.forget(&record.shim_address).await;
        let (status, at) = match self.shims.delete_dead(&record.id, Path::new(&record.bundle)).await {
            Ok(response) => (response.exit_status, timestamp_nanos(&response.exited_at)),
            Err(error) => {
                tracing::warn!(container = %record.id, %error, "cleaning up after a dead shim");
                (255, now_nanos())
            }
        };
        self.record_exit(&record.namespace, &record.id, status, at).await
    }

    /// Removes a container (stopping it first); a missing one is not an error.
    pub async fn remove_container(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let record = match self.container(namespace, id) {
            Ok(record) => record,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        let intent = Intent::new(Operation::RemoveContainer, namespace, &record.id);
        self.with_intent(intent, self.remove_container_steps(namespace, &record.id)).await
    }

    async fn remove_container_steps(&self, namespace: &str, id: &str) -> CoreResult<()> {
        crash_point!("remove_container.after_intent");
        self.stop_container(namespace, id, 0).await?;
        crash_point!("remove_container.after_stop");
        let (_guard, record) = self.lock_pod_of(namespace, id).await?;
        self.discard_container(&record).await;
        self.publish(&record, LifecycleEvent::Deleted);
        Ok(())
    }
}

/// One mount of a container's root filesystem, as the shim mounts it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RootfsMount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

impl RootfsMount {
    fn to_proto(&self) -> Mount {
        Mount { type_: self.kind.clone(), source: self.source.clone(), options: self.options.clone(), ..Default::default() }
    }
}

/// The root filesystem mounts recorded at creation: a missing or unreadable record is
/// an error (starting without them would run the container on its empty mount point).
fn read_rootfs_mounts(bundle: &Path) -> CoreResult<Vec<RootfsMount>> {
    let path = bundle.join("rootfs.json");
    let bytes = std::fs::read(&path).map_err(io_error(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|error| CoreError::Internal(format!("{} is malformed: {error}", path.display())))
}

/// What a container's image gives it: ids, defaults, and its root filesystem mounts.
pub struct PreparedRootfs {
    pub image_id: String,
    pub image_ref: String,
    pub defaults: spec::ImageDefaults,
    pub mounts: Vec<RootfsMount>,
}

/// Creates the working directory in the container's (fresh, empty) writable layer when
/// no layer has it, as Docker and containerd do. `layers` is upper first.
fn ensure_working_dir(layers: &[std::path::PathBuf], cwd: &str) -> CoreResult<()> {
    let relative = Path::new(cwd.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(CoreError::InvalidArgument(format!("working directory {cwd:?} must be a plain absolute path")));
    }
    let Some(upper) = layers.first() else { return Ok(()) };
    if relative.as_os_str().is_empty() || spec::layers::find(layers, cwd).is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(upper.join(relative)).map_err(io_error(format!("creating the working directory {cwd}")))
}

/// The container's cgroup: under the pod's parent, or the configured default.
/// The container's cgroupsPath: under the pod's cgroup parent, else the configured one.
/// A systemd slice name as parent (what the kubelet sends with the systemd cgroup
/// driver, `kubepods-besteffort-pod<uid>.slice`) stands for that slice's directory, and
/// the container gets a `berth-<id>.scope` directory in it.
fn cgroups_path(pod_parent: &str, default_parent: &str, id: &str) -> CoreResult<String> {
    let parent = match pod_parent.trim_end_matches('/') {
        "" => default_parent.trim_end_matches('/'),
        parent => parent,
    };
    if !parent.ends_with(".slice") || parent.contains('/') {
        return Ok(format!("{parent}/{id}"));
    }
    let slice = expand_slice(parent).ok_or_else(|| CoreError::InvalidArgument(format!("invalid systemd slice name {parent:?} as cgroup parent")))?;
    Ok(format!("{slice}/berth-{id}.scope"))
}

/// `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice` (`-.slice` is the root), as
/// systemd nests slices by their dash-separated prefixes.
fn expand_slice(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".slice")?;
    if stem == "-" {
        return Some(String::new());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return None;
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push_str(&format!("/{prefix}.slice"));
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents_as_paths_and_as_systemd_slices() {
        assert_eq!(cgroups_path("", "/berth", "c1").ok(), Some("/berth/c1".into()));
        assert_eq!(cgroups_path("/kubepods/besteffort/pod1/", "/berth", "c1").ok(), Some("/kubepods/besteffort/pod1/c1".into()));
        assert_eq!(
            cgroups_path("kubepods-besteffort-pod1.slice", "/berth", "c1").ok(),
            Some("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/berth-c1.scope".into())
        );
        assert_eq!(cgroups_path("-.slice", "/berth", "c1").ok(), Some("/berth-c1.scope".into()));
        assert!(cgroups_path("a--b.slice", "/berth", "c1").is_err());
    }
}

pub fn timestamp_nanos(at: &MessageField<protobuf::well_known_types::timestamp::Timestamp>) -> i64 {
    at.as_ref().map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos)).unwrap_or(0)
}

/// `process.user` of a generated config.json.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciUser {
    uid: u32,
    gid: u32,
    #[serde(default)]
    additional_gids: Vec<u32>,
}

impl OciUser {
    fn into_identity(self) -> crate::core::ProcessIdentity {
        crate::core::ProcessIdentity { uid: self.uid, gid: self.gid, additional_gids: self.additional_gids }
    }
}
