//! Pod sandboxes: a name, pinned namespaces (network, IPC, UTS) and a shared /dev/shm,
//! with no process of their own; their containers join them.
use super::pin::{self, PinPlan};
use super::*;

/// The pod's /dev/shm size, as Docker and containerd default it.
const SHM_BYTES: u64 = 64 << 20;

impl Core {
    fn pin_plan(&self, id: &str, spec: &SandboxSpec) -> PinPlan {
        let own_network = spec.network != NamespaceMode::Node;
        PinPlan {
            network: own_network.then(|| self.paths.netns(id)),
            ipc: (spec.ipc != NamespaceMode::Node).then(|| self.paths.sandbox_dir(id).join("ipc")),
            // A pod on the host's network also keeps the host's name, as with containerd.
            uts: own_network.then(|| self.paths.sandbox_dir(id).join("uts")),
            hostname: spec.hostname.clone(),
        }
    }

    /// Creates a pod sandbox and returns its id.
    pub async fn run_sandbox(&self, namespace: &str, spec: SandboxSpec) -> CoreResult<String> {
        if spec.name.is_empty() {
            return Err(CoreError::InvalidArgument("the sandbox name must not be empty".into()));
        }
        if spec.pid == NamespaceMode::Target {
            return Err(CoreError::InvalidArgument("a pod's pid namespace cannot target a container".into()));
        }
        let id = ids::new_id()?;
        let _guard = self.write_lock.lock().await;
        let mut record = self.reserve_sandbox(namespace, &id, spec)?;
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
            shm: None,
            ips: Vec::new(),
            complete: false,
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
        record.netns = plan.network.as_ref().map(|p| p.display().to_string());
        record.ipcns = plan.ipc.as_ref().map(|p| p.display().to_string());
        record.utsns = plan.uts.as_ref().map(|p| p.display().to_string());
        if plan.ipc.is_some() {
            let shm = dir.join("shm");
            pin::mount_shm(&shm, SHM_BYTES)?;
            record.shm = Some(shm.display().to_string());
        }
        self.write_etc_files(record)?;
        record.state = SandboxState::Ready;
        Ok(())
    }

    /// hosts, hostname and resolv.conf, bind-mounted into each container of the pod.
    fn write_etc_files(&self, record: &SandboxRecord) -> CoreResult<()> {
        let dir = self.paths.sandbox_dir(&record.id);
        let hostname = match record.spec.network {
            NamespaceMode::Node => nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            _ => record.spec.hostname.clone(),
        };
        let hosts = match record.spec.network {
            NamespaceMode::Node => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            _ => etc_hosts(&hostname, record.ips.first().map(String::as_str)),
        };
        let resolv = resolv_conf(record.spec.dns.as_ref());
        for (name, text) in [("hostname", format!("{hostname}\n")), ("hosts", hosts), ("resolv.conf", resolv)] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io_error(format!("writing {}", path.display())))?;
        }
        Ok(())
    }

    /// Releases everything of a sandbox but its record (idempotent).
    pub(crate) async fn teardown_sandbox(&self, record: &SandboxRecord) {
        let plan = self.pin_plan(&record.id, &record.spec);
        pin::unpin(&plan);
        let dir = self.paths.sandbox_dir(&record.id);
        pin::unmount_shm(&dir.join("shm"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    pub(crate) fn forget_sandbox(&self, record: &SandboxRecord) -> CoreResult<()> {
        self.release_name(SANDBOXES, &record.namespace, "sandbox", &record.spec.name, &record.id)
    }

    pub fn list_sandboxes(&self, namespace: &str) -> CoreResult<Vec<SandboxRecord>> {
        let prefix = format!("{namespace}/");
        let records = self.store.read(|txn| txn.list_prefix(SANDBOXES, &prefix))?;
        Ok(records.into_iter().map(|(_, record)| record).filter(|r| r.complete).collect())
    }

    /// A sandbox by id or unique id prefix.
    pub fn sandbox(&self, namespace: &str, id: &str) -> CoreResult<SandboxRecord> {
        let records = self.list_sandboxes(namespace)?;
        let id = ids::resolve("sandbox", id, records.iter().map(|r| r.id.as_str()))?;
        records
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| CoreError::NotFound(format!("sandbox {id} not found")))
    }

    /// Stops every container of the pod and releases its network; idempotent.
    pub async fn stop_sandbox(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let record = match self.sandbox(namespace, id) {
            Ok(record) => record,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        for container in self.containers_of_sandbox(namespace, &record.id)? {
            self.stop_container(namespace, &container.id, 0).await?;
        }
        let _guard = self.write_lock.lock().await;
        let mut record = self.sandbox(namespace, &record.id)?;
        if record.state == SandboxState::NotReady {
            return Ok(());
        }
        if let Some(netns) = record.netns.take() {
            pin::unpin_path(std::path::Path::new(&netns));
        }
        record.state = SandboxState::NotReady;
        self.store.write(|txn| txn.put(SANDBOXES, &record_key(namespace, &record.id), &record))?;
        Ok(())
    }

    /// Removes the pod and its containers; a missing pod is not an error.
    pub async fn remove_sandbox(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let record = match self.sandbox(namespace, id) {
            Ok(record) => record,
            Err(CoreError::NotFound(_)) => return Ok(()),
            Err(error) => return Err(error),
        };
        self.stop_sandbox(namespace, &record.id).await?;
        for container in self.containers_of_sandbox(namespace, &record.id)? {
            self.remove_container(namespace, &container.id).await?;
        }
        let _guard = self.write_lock.lock().await;
        self.teardown_sandbox(&record).await;
        self.forget_sandbox(&record)
    }
}

fn etc_hosts(hostname: &str, ip: Option<&str>) -> String {
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    hosts
}

/// The pod's DNS settings, or the host's resolvers without loopback ones (which would
/// point into the pod itself), as Docker does.
fn resolv_conf(dns: Option<&DnsSettings>) -> String {
    if let Some(dns) = dns.filter(|d| !d.servers.is_empty() || !d.searches.is_empty() || !d.options.is_empty()) {
        let mut text = String::new();
        for server in &dns.servers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !dns.searches.is_empty() {
            text.push_str(&format!("search {}\n", dns.searches.join(" ")));
        }
        if !dns.options.is_empty() {
            text.push_str(&format!("options {}\n", dns.options.join(" ")));
        }
        return text;
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    host.lines()
        .filter(|line| {
            let server = line.strip_prefix("nameserver").map(str::trim);
            !matches!(server, Some(s) if s.starts_with("127.") || s == "::1")
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_the_pod_dns_config() {
        let dns = DnsSettings { servers: vec!["10.0.0.10".into()], searches: vec!["a.svc".into(), "svc".into()], options: vec!["ndots:5".into()] };
        assert_eq!(resolv_conf(Some(&dns)), "nameserver 10.0.0.10\nsearch a.svc svc\noptions ndots:5\n");
        assert!(!resolv_conf(None).contains("nameserver 127."));
    }
}
