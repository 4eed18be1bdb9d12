//! Pod sandboxes: a name, pinned namespaces (network, IPC, UTS) and a shared /dev/shm,
//! with no process of their own; their containers join them.
use super::pin::{self, PinPlan};
use super::intents::{Intent, Operation};
use super::pod_init;
use super::*;
use crate::network::{write_name_files, AttachRequest, DnsConfig, Protocol};

/// The pod's /dev/shm size, as Docker and containerd default it.
const SHM_BYTES: u64 = 64 << 20;

/// Under the state directory: the init roots of pods with their own user namespace.
const USERNS_INIT_ROOTS: &str = "userns-init-roots";

/// In the pod's directory: the pin of its shared PID namespace.
const POD_INIT_PIN: &str = "pid";

impl Core {
    fn pin_plan(&self, id: &str, spec: &SandboxSpec) -> PinPlan {
        let host_network = spec.network == NamespaceMode::Node;
        let own_network = !host_network && spec.network_of.is_none();
        PinPlan {
            network: own_network.then(|| self.paths.netns(id)),
            ipc: (spec.ipc != NamespaceMode::Node).then(|| self.paths.sandbox_dir(id).join("ipc")),
            // A pod on the host's network also keeps the host's name, as with containerd.
            uts: (!host_network).then(|| self.paths.sandbox_dir(id).join("uts")),
            hostname: spec.hostname.clone(),
            user: spec.user_namespace.as_ref().map(|maps| (self.paths.sandbox_dir(id).join("user"), maps.clone())),
        }
    }

    /// Creates a pod sandbox and returns its id.
    pub async fn run_sandbox(&self, namespace: &str, spec: SandboxSpec) -> CoreResult<String> {
        self.run_sandbox_with_id(namespace, ids::new_id()?, spec).await
    }

    /// Creates a pod sandbox with an id the caller chose (from [`ids::new_id`]).
    pub async fn run_sandbox_with_id(&self, namespace: &str, id: String, spec: SandboxSpec) -> CoreResult<String> {
        self.make_sandbox(namespace, id, spec, false).await
    }

    /// Like [`Core::run_sandbox_with_id`], but a sandbox with a network of its own is
    /// made released (see `network_release`): no endpoint until `restore_network`.
    pub async fn run_sandbox_unplugged(&self, namespace: &str, id: String, spec: SandboxSpec) -> CoreResult<String> {
        self.make_sandbox(namespace, id, spec, true).await
    }

    async fn make_sandbox(&self, namespace: &str, id: String, spec: SandboxSpec, unplugged: bool) -> CoreResult<String> {
        if spec.name.is_empty() {
            return Err(CoreError::InvalidArgument("the sandbox name must not be empty".into()));
        }
        if spec.pid == NamespaceMode::Target {
            return Err(CoreError::InvalidArgument("a pod's pid namespace cannot target a container".into()));
        }
        limits::check_labels("labels", &spec.labels)?;
        limits::check_labels("annotations", &spec.annotations)?;
        let _guard = self.lock_pod(namespace, &id).await;
        let mut record = self.reserve_sandbox(namespace, &id, spec)?;
        record.network_released = unplugged && super::network_release::plugs_own_network(&record.spec);
        crash_point!("run_pod_sandbox.after_reserve");
        match self.build_sandbox(&mut record).await {
            Ok(()) => {
                record.complete = true;
                self.store.write(|txn| txn.put(SANDBOXES, &record_key(namespace, &id), &record))?;
                Ok(id)
            }
            Err(error) => {
                self.teardown_sandbox(&record).await;
                self.forget_sandbox(&record)?;
                Err(error)
            }
        }
    }

    /// Claims the name and writes an incomplete record, in one transaction.
    fn reserve_sandbox(&self, namespace: &str, id: &str, spec: SandboxSpec) -> CoreResult<SandboxRecord> {
        let record = SandboxRecord {
            id: id.to_string(),
            namespace: namespace.to_string(),
            state: SandboxState::NotReady,
            created_at: now_nanos(),
            netns: None,
            ipcns: None,
            utsns: None,
            userns: None,
            shm: None,
            pod_init: None,
            shims: Vec::new(),
            ips: Vec::new(),
            interfaces: Vec::new(),
            complete: false,
            network_released: false,
            owned_cgroup_parent: None,
            spec,
        };
        self.claim_name(SANDBOXES, namespace, "sandbox", &record.spec.name, id, &record)?;
        Ok(record)
    }

    async fn build_sandbox(&self, record: &mut SandboxRecord) -> CoreResult<()> {
        let plan = self.pin_plan(&record.id, &record.spec);
        let dir = self.paths.sandbox_dir(&record.id);
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        tokio::task::block_in_place(|| pin::pin(&plan))?;
        crash_point!("run_pod_sandbox.after_pin");
        record.netns = plan.network.as_ref().map(|p| p.display().to_string());
        record.ipcns = plan.ipc.as_ref().map(|p| p.display().to_string());
        record.utsns = plan.uts.as_ref().map(|p| p.display().to_string());
        record.userns = plan.user.as_ref().map(|(p, _)| p.display().to_string());
        if plan.ipc.is_some() {
            let shm = dir.join("shm");
            pin::mount_shm(&shm, record.spec.shm_bytes.unwrap_or(SHM_BYTES))?;
            record.shm = Some(shm.display().to_string());
            crash_point!("run_pod_sandbox.after_shm");
        }
        if record.spec.pid == NamespaceMode::Pod {
            let userns = plan.user.as_ref().map(|(path, _)| path.as_path());
            let root = self.pod_init_root(&record.id, userns.is_some())?;
            let init = pod_init::start(&self.paths.pod_init_binary, &root, &dir.join(POD_INIT_PIN), userns).await?;
            record.pod_init = Some(init);
            crash_point!("run_pod_sandbox.after_pod_init");
        }
        if let Some(other) = &record.spec.network_of {
            record.netns = Some(self.join_network_of(record, other)?);
        }
        match &plan.network {
            None if record.spec.network_of.is_some() => {}
            Some(_) if record.spec.networks.as_ref().is_some_and(|n| n.is_empty()) || record.network_released => self.write_loopback_network_files(record)?,
            Some(netns) => self.attach_network(record, netns).await?,
            None => self.write_host_network_files(record)?,
        }
        crash_point!("run_pod_sandbox.after_network");
        record.state = SandboxState::Ready;
        Ok(())
    }

    /// Plugs the pod into the network (built-in bridge or CNI); the network module also
    /// writes the pod's hosts, hostname and resolv.conf into the sandbox directory.
    pub(super) async fn attach_network(&self, record: &mut SandboxRecord, netns: &std::path::Path) -> CoreResult<()> {
        let mut port_mappings = Vec::new();
        for mapping in &record.spec.port_mappings {
            port_mappings.push(port_mapping(mapping)?);
        }
        let wanted = record.spec.networks.clone().unwrap_or_default();
        let request = AttachRequest {
            sandbox_id: record.id.clone(),
            netns_path: netns.to_path_buf(),
            networks: wanted.iter().map(|n| n.name.clone()).collect(),
            endpoints: wanted.iter().map(|n| Ok((n.name.clone(), super::networks::endpoint_options(n)?))).collect::<CoreResult<_>>()?,
            port_mappings,
            hostname: record.spec.hostname.clone(),
            // Peers on user-defined networks know the sandbox by its name too (Docker's
            // container name).
            aliases: vec![record.spec.name.clone()],
            links: record.spec.links.clone(),
            files_dir: Some(self.paths.sandbox_dir(&record.id)),
            dns: dns_config(&record.spec),
        };
        let attachment = self.network.attach(&request).await?;
        record.ips = attachment.interfaces.iter().map(|i| i.ip.to_string()).collect();
        record.interfaces = attachment.interfaces;
        Ok(())
    }

    /// The network namespace of sandbox `other`, and copies of its name files.
    fn join_network_of(&self, record: &SandboxRecord, other: &str) -> CoreResult<String> {
        let target = self.sandbox(&record.namespace, other)?;
        let netns = target.netns.clone().ok_or_else(|| CoreError::FailedPrecondition(format!("sandbox {} has no network namespace to join", target.id)))?;
        let (from, to) = (self.paths.sandbox_dir(&target.id), self.paths.sandbox_dir(&record.id));
        for name in ["hosts", "hostname", "resolv.conf"] {
            std::fs::copy(from.join(name), to.join(name)).map_err(io_error(format!("copying the {name} of sandbox {}", target.id)))?;
        }
        Ok(netns)
    }

    /// A pod with loopback only (Docker's `none`) knows only its own name.
    fn write_loopback_network_files(&self, record: &SandboxRecord) -> CoreResult<()> {
        let dns = dns_config(&record.spec);
        write_name_files(&self.paths.sandbox_dir(&record.id), &record.spec.hostname, None, &[], dns.as_ref(), DnsConfig::extra_hosts_of(dns.as_ref()))?;
        Ok(())
    }

    /// A pod on the host's network gets the host's name and hosts file.
    fn write_host_network_files(&self, record: &SandboxRecord) -> CoreResult<()> {
        let dir = self.paths.sandbox_dir(&record.id);
        let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
        let dns = dns_config(&record.spec);
        write_name_files(&dir, &hostname, None, &[], dns.as_ref(), &[])?;
        let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        for line in DnsConfig::extra_hosts_of(dns.as_ref()) {
            hosts.push_str(&format!("{line}\n"));
        }
        std::fs::write(dir.join("hosts"), hosts).map_err(io_error("writing the pod's hosts file"))
    }

    /// Releases everything of a sandbox but its record (idempotent).
    pub(crate) async fn teardown_sandbox(&self, record: &SandboxRecord) {
        if let Err(error) = self.network.detach(&record.id).await {
            tracing::warn!(sandbox = %record.id, %error, "detaching the pod's network");
        }
        let plan = self.pin_plan(&record.id, &record.spec);
        pin::unpin(&plan);
        if let Some(init) = &record.pod_init {
            init.release().await;
        }
        // An init started by a run that died before recording it (a recorded init's
        // starter has exited: it printed the pid that was recorded). The search reads
        // every process's command line, so it runs only when it can find something.
        if record.pod_init.is_none() {
            pod_init::kill_strays(&self.pod_init_root_path(&record.id, record.spec.user_namespace.is_some())).await;
        }
        let dir = self.paths.sandbox_dir(&record.id);
        pin::unpin_path(&dir.join(POD_INIT_PIN));
        pin::unmount_shm(&dir.join("shm"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir(self.paths.state.join(USERNS_INIT_ROOTS).join(&record.id));
    }

    /// The empty directory the pod's init mounts its root on. Inside the pod's directory
    /// (root's only), except for a pod with its own user namespace, whose init (the
    /// namespace's root, an unprivileged id on the host) could not reach it there: its
    /// directory sits in one that others may pass through but not list.
    fn pod_init_root(&self, id: &str, in_user_namespace: bool) -> CoreResult<std::path::PathBuf> {
        let root = self.pod_init_root_path(id, in_user_namespace);
        if let (true, Some(parent)) = (in_user_namespace, root.parent()) {
            std::fs::create_dir_all(parent).map_err(io_error(format!("creating {}", parent.display())))?;
            berth_runtime::private_fs::set_mode(parent, 0o711).map_err(io_error(format!("setting the mode of {}", parent.display())))?;
        }
        Ok(root)
    }

    /// Where [`Self::pod_init_root`] puts the init's root (the init's first argument).
    fn pod_init_root_path(&self, id: &str, in_user_namespace: bool) -> std::path::PathBuf {
        match in_user_namespace {
            false => self.paths.sandbox_dir(id).join("init-root"),
            true => self.paths.state.join(USERNS_INIT_ROOTS).join(id),
        }
    }

    /// Notes the shim serving one of the pod's containers, so that removing the pod
    /// shuts it down even after its containers were removed one by one.
    pub(crate) fn remember_shim(&self, sandbox: &SandboxRecord, address: &str) -> CoreResult<()> {
        let key = record_key(&sandbox.namespace, &sandbox.id);
        self.store.write(|txn| {
            if let Some(mut record) = txn.get(SANDBOXES, &key)? {
                if !record.shims.iter().any(|known| known == address) {
                    record.shims.push(address.to_string());
                    txn.put(SANDBOXES, &key, &record)?;
                }
            }
            Ok::<(), StoreError>(())
        })?;
        Ok(())
    }

    pub(crate) fn forget_sandbox(&self, record: &SandboxRecord) -> CoreResult<()> {
        self.release_name(SANDBOXES, &record.namespace, "sandbox", &record.spec.name, &record.id)
    }

    pub fn list_sandboxes(&self, namespace: &str) -> CoreResult<Vec<SandboxRecord>> {
        let prefix = format!("{namespace}/");
        let records = self.store.read(|txn| txn.list_prefix(SANDBOXES, &prefix))?;
        Ok(records.into_iter().map(|(_, record)| record).filter(|r| r.complete).map(with_live_state).collect())
    }

    /// A sandbox by id or unique id prefix. A full id is read alone: listing every pod
    /// (each record decoded, each init checked) made every call on a busy node cost
    /// more than the last.
    pub fn sandbox(&self, namespace: &str, id: &str) -> CoreResult<SandboxRecord> {
        let exact = self.store.read(|txn| txn.get::<SandboxRecord>(SANDBOXES, &record_key(namespace, id)))?;
        if let Some(record) = exact.filter(|r| r.complete && r.id == id) {
            return Ok(with_live_state(record));
        }
        let prefix = format!("{namespace}/");
        let records = self.store.read(|txn| txn.list_prefix(SANDBOXES, &prefix))?;
        let records: Vec<SandboxRecord> = records.into_iter().map(|(_, record)| record).filter(|r| r.complete).collect();
        let id = ids::resolve("sandbox", id, records.iter().map(|r| r.id.as_str()))?;
        records
            .into_iter()
            .find(|r| r.id == id)
            .map(with_live_state)
            .ok_or_else(|| CoreError::NotFound(format!("sandbox {id} not found")))
    }

    /// Stops every container of the pod and releases its network; idempotent.
    pub async fn stop_sandbox(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let record = match self.sandbox(namespace, id) {
            Ok(record) => record,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        let intent = Intent::new(Operation::StopSandbox, namespace, &record.id);
        self.with_intent(intent, self.stop_sandbox_steps(namespace, record)).await
    }

    async fn stop_sandbox_steps(&self, namespace: &str, record: SandboxRecord) -> CoreResult<()> {
        crash_point!("stop_pod_sandbox.after_intent");
        for container in self.containers_of_sandbox(namespace, &record.id)? {
            self.stop_container(namespace, &container.id, 0).await?;
        }
        crash_point!("stop_pod_sandbox.after_stop_containers");
        let _guard = self.lock_pod(namespace, &record.id).await;
        let key = record_key(namespace, &record.id);
        let Some(mut record) = self.store.read(|txn| txn.get(SANDBOXES, &key))? else {
            return Ok(());
        };
        if record.state == SandboxState::NotReady {
            return Ok(());
        }
        self.network.detach(&record.id).await?;
        crash_point!("stop_pod_sandbox.after_network");
        if let Some(init) = &record.pod_init {
            init.stop().await;
        }
        crash_point!("stop_pod_sandbox.after_pod_init");
        if let Some(netns) = record.netns.take().filter(|_| record.spec.network_of.is_none()) {
            pin::unpin_path(std::path::Path::new(&netns));
        }
        crash_point!("stop_pod_sandbox.after_unpin");
        record.state = SandboxState::NotReady;
        self.store.write(|txn| txn.put(SANDBOXES, &key, &record))?;
        Ok(())
    }

    /// Removes the pod and its containers; a missing pod is not an error.
    pub async fn remove_sandbox(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let record = match self.sandbox(namespace, id) {
            Ok(record) => record,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        let intent = Intent::new(Operation::RemoveSandbox, namespace, &record.id);
        self.with_intent(intent, self.remove_sandbox_steps(namespace, record)).await
    }

    async fn remove_sandbox_steps(&self, namespace: &str, record: SandboxRecord) -> CoreResult<()> {
        crash_point!("remove_pod_sandbox.after_intent");
        self.stop_sandbox(namespace, &record.id).await?;
        let containers = self.containers_of_sandbox(namespace, &record.id)?;
        for container in &containers {
            self.remove_container(namespace, &container.id).await?;
        }
        crash_point!("remove_pod_sandbox.after_remove_containers");
        let mut shims: Vec<&str> = containers.iter().map(|c| c.shim_address.as_str()).filter(|a| !a.is_empty()).collect();
        shims.extend(record.shims.iter().map(String::as_str));
        shims.sort_unstable();
        shims.dedup();
        for address in shims {
            self.shutdown_shim_if_idle(address).await;
        }
        crash_point!("remove_pod_sandbox.after_shims");
        let _guard = self.lock_pod(namespace, &record.id).await;
        self.remove_cgroup_parent(&record);
        self.teardown_sandbox(&record).await;
        crash_point!("remove_pod_sandbox.after_teardown");
        self.forget_sandbox(&record)
    }
}

/// A pod whose shared PID namespace's init is gone is no longer ready (as a pod whose
/// pause container exited).
fn with_live_state(mut record: SandboxRecord) -> SandboxRecord {
    let init_gone = record.pod_init.as_ref().is_some_and(|init| !init.is_alive());
    if record.state == SandboxState::Ready && init_gone {
        record.state = SandboxState::NotReady;
    }
    record
}

/// The network module's form of the pod's DNS settings.
pub(crate) fn dns_config(spec: &SandboxSpec) -> Option<DnsConfig> {
    spec.dns.as_ref().map(|d| DnsConfig { servers: d.servers.clone(), searches: d.searches.clone(), options: d.options.clone(), extra_hosts: d.extra_hosts.clone() })
}

pub(super) fn port_mapping(mapping: &PortMapping) -> CoreResult<crate::network::PortMapping> {
    let protocol = match mapping.protocol.as_str() {
        "tcp" | "" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(CoreError::InvalidArgument(format!("port mapping protocol {other:?} is not supported"))),
    };
    let host_ip = match mapping.host_ip.as_str() {
        "" | "0.0.0.0" => None,
        text => Some(text.parse().map_err(|_| CoreError::InvalidArgument(format!("host IP {text:?} is not an IPv4 address")))?),
    };
    Ok(crate::network::PortMapping { protocol, container_port: mapping.container_port, host_port: mapping.host_port, host_ip })
}
