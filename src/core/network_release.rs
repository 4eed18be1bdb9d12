//! Docker's rule that only a running container holds network endpoints: the sandbox
//! of a stopped container gives its endpoints, addresses and published ports back but
//! keeps what it asked for (its networks, aliases and a fixed `--ip`), and takes them
//! again just before it starts; a network removed meanwhile makes that start fail.
//! While released, a connect or disconnect changes only what is asked for. A Docker
//! sandbox is made released (`run_sandbox_unplugged`): a created container holds none.
use super::*;

/// Whether a sandbox of this spec plugs a network namespace of its own into networks.
pub(super) fn plugs_own_network(spec: &SandboxSpec) -> bool {
    spec.network != NamespaceMode::Node && spec.network_of.is_none() && spec.networks.as_ref().is_none_or(|n| !n.is_empty())
}

/// Whether the sandbox holds endpoints it can give back.
fn releasable(record: &SandboxRecord) -> bool {
    !record.network_released && record.spec.network != NamespaceMode::Node && record.netns.is_some() && record.spec.network_of.is_none() && !record.interfaces.is_empty()
}

impl Core {
    /// Detaches the sandbox's endpoints and marks it released; Ok(false) when it held none.
    pub async fn release_network(&self, namespace: &str, sandbox_id: &str) -> CoreResult<bool> {
        let _guard = self.lock_pod(namespace, sandbox_id).await;
        let record = self.sandbox(namespace, sandbox_id)?;
        if !releasable(&record) {
            return Ok(false);
        }
        self.network.detach(&record.id).await?;
        self.write_interfaces(&record, Vec::new(), |stored| stored.network_released = true)?;
        Ok(true)
    }

    /// Attaches a released sandbox again to the networks it asks for.
    pub async fn restore_network(&self, namespace: &str, sandbox_id: &str) -> CoreResult<()> {
        let _guard = self.lock_pod(namespace, sandbox_id).await;
        let mut record = self.sandbox(namespace, sandbox_id)?;
        if !record.network_released {
            return Ok(());
        }
        let netns = record.netns.clone().ok_or_else(|| CoreError::FailedPrecondition(format!("sandbox {} has no network namespace", record.id)))?;
        if record.spec.networks.as_ref().is_none_or(|n| !n.is_empty()) {
            self.attach_network(&mut record, std::path::Path::new(&netns)).await?;
        }
        self.write_interfaces(&record, record.interfaces.clone(), |stored| stored.network_released = false)
    }
}
