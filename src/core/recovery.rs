//! Start-up: half-made objects are removed, and every container that was running is
//! checked with its shim (all shims at once): still running, exited while the daemon
//! was down (its exit is recorded), or its shim is gone (cleaned up, reported exited).
//! The same check runs while the daemon serves, for the containers of a shim whose
//! connection closed.
use containerd_shim_protos::api::StateRequest;
use containerd_shim_protos::api::Status;

use super::*;
use crate::task::context;

impl Core {
    pub async fn recover(&self) -> CoreResult<()> {
        self.drop_incomplete().await?;
        self.reconcile_network().await?;
        let namespaces = ["k8s", "docker"];
        let mut running = Vec::new();
        for namespace in namespaces {
            running.extend(self.list_containers(namespace)?.into_iter().filter(ContainerRecord::is_live));
        }
        let checks = running.iter().map(|record| self.recover_container(record));
        let outcomes = futures::future::join_all(checks).await;
        for (record, outcome) in running.iter().zip(outcomes) {
            if let Err(error) = outcome {
                tracing::warn!(container = %record.id, %error, "recovering a container");
            }
        }
        tracing::info!(containers = running.len(), "recovered running containers");
        Ok(())
    }

    /// The connection to the shim at `address` closed: each live container it served
    /// is checked again (a new shim at the same address does not know them), so the
    /// containers of a dead shim are cleaned up and their exits recorded.
    pub async fn handle_lost_shim(&self, address: &str) {
        let mut served = Vec::new();
        for namespace in ["k8s", "docker"] {
            match self.list_containers(namespace) {
                Ok(records) => served.extend(records.into_iter().filter(|r| r.is_live() && r.shim_address == address)),
                Err(error) => tracing::warn!(%address, %error, "listing the containers of a lost shim"),
            }
        }
        for record in &served {
            if let Err(error) = self.recover_container(record).await {
                tracing::warn!(container = %record.id, %error, "checking a container whose shim connection closed");
            }
        }
    }

    pub(crate) async fn recover_container(&self, record: &ContainerRecord) -> CoreResult<()> {
        let client = match self.shims.client(&record.shim_address).await {
            Ok(client) => client,
            Err(_) => return self.reap_lost_container(record).await,
        };
        let request = StateRequest { id: record.id.clone(), ..Default::default() };
        let state = match client.state(context(), &request).await {
            Ok(state) => state,
            Err(_) => return self.reap_lost_container(record).await,
        };
        match state.status.enum_value_or_default() {
            Status::RUNNING | Status::PAUSED | Status::PAUSING | Status::CREATED => Ok(()),
            _ => {
                let at = super::container::timestamp_nanos(&state.exited_at);
                self.record_exit(&record.namespace, &record.id, state.exit_status, at).await
            }
        }
    }

    /// Networking keeps exactly what the ready pods need (after a crash, say).
    async fn reconcile_network(&self) -> CoreResult<()> {
        let mut live = Vec::new();
        for namespace in ["k8s", "docker"] {
            let ready = self.list_sandboxes(namespace)?.into_iter().filter(|s| s.state == SandboxState::Ready && s.netns.is_some());
            live.extend(ready.map(|s| s.id));
        }
        self.network.reconcile(&live).await?;
        Ok(())
    }

    /// Records whose creation never finished: undo what they may hold.
    async fn drop_incomplete(&self) -> CoreResult<()> {
        let containers = self.store.read(|txn| txn.list(CONTAINERS))?;
        for (_, record) in containers.into_iter().filter(|(_, r)| !r.complete) {
            tracing::info!(container = %record.id, "removing a container whose creation was interrupted");
            self.discard_container(&record).await;
        }
        let sandboxes = self.store.read(|txn| txn.list(SANDBOXES))?;
        for (_, record) in sandboxes.into_iter().filter(|(_, r)| !r.complete) {
            tracing::info!(sandbox = %record.id, "removing a sandbox whose creation was interrupted");
            self.teardown_sandbox(&record).await;
            self.forget_sandbox(&record)?;
        }
        Ok(())
    }
}

