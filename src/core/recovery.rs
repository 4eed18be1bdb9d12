//! Start-up: half-made objects are removed, and every container that was running is
//! checked with its shim (all shims at once): still running, exited while the daemon
//! was down (its exit is recorded), or its shim is gone (cleaned up, reported exited).
//! The same check runs while the daemon serves, for the containers of a shim whose
//! connection closed. Operations that a dead daemon left under way (their intent
//! records, see `intents.rs`) are settled: a start is undone (its task killed and
//! deleted, its shim shut down if idle, the container left created, ready for another
//! start), a stop or a removal is finished; what interrupted pulls left is collected.
use containerd_shim_protos::api::{DeleteRequest, KillRequest, StateRequest, Status, WaitRequest};

use super::intents::{Intent, Operation};
use super::*;
use crate::task::context;

/// How long an undone start waits for its killed task to exit.
const UNDO_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Core {
    pub async fn recover(&self) -> CoreResult<()> {
        self.drop_incomplete().await?;
        let intents = self.pending_intents()?;
        let (starts, others): (Vec<Intent>, Vec<Intent>) = intents.into_iter().partition(|i| i.operation == Operation::StartContainer);
        for intent in &starts {
            self.settle_intent(intent).await;
        }
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
        for intent in &others {
            self.settle_intent(intent).await;
        }
        self.collect_pull_leftovers();
        Ok(())
    }

    /// A pull cut short leaves blobs and layers that no image names (its partial
    /// downloads and unpacked directories went when the stores opened): garbage.
    fn collect_pull_leftovers(&self) {
        match self.images.gc() {
            Ok(report) if report.blobs_removed + report.snapshots_removed > 0 => {
                tracing::info!(blobs = report.blobs_removed, snapshots = report.snapshots_removed, "removed what interrupted pulls left")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "collecting what interrupted pulls left"),
        }
    }

    /// Undoes or finishes what `intent` says was under way, then erases it.
    async fn settle_intent(&self, intent: &Intent) {
        tracing::info!(operation = ?intent.operation, id = %intent.id, "settling an operation a crash interrupted");
        let outcome = match intent.operation {
            Operation::StartContainer => self.undo_start(intent).await,
            Operation::StopSandbox => self.stop_sandbox(&intent.namespace, &intent.id).await,
            Operation::RemoveSandbox => self.remove_sandbox(&intent.namespace, &intent.id).await,
            Operation::RemoveContainer => self.remove_container(&intent.namespace, &intent.id).await,
        };
        if let Err(error) = outcome {
            tracing::warn!(operation = ?intent.operation, id = %intent.id, %error, "settling an interrupted operation");
        }
        if let Err(error) = self.clear_intent(intent) {
            tracing::warn!(id = %intent.id, %error, "erasing an intent record");
        }
    }

    /// A start cut short: the container's record still says created, so its task (if
    /// the shim got that far) is killed and deleted, which unmounts its root and
    /// removes its cgroups, and its shim is asked to exit if it serves nothing else.
    async fn undo_start(&self, intent: &Intent) -> CoreResult<()> {
        let Some(record) = self.store.get(CONTAINERS, &record_key(&intent.namespace, &intent.id))? else { return Ok(()) };
        if record.state != ContainerState::Created {
            return Ok(());
        }
        let bundle = std::path::Path::new(&record.bundle);
        // `berth-shim start` writes the shim's address into the bundle.
        let Ok(address) = std::fs::read_to_string(bundle.join("address")) else { return Ok(()) };
        match self.shims.client(address.trim()).await {
            Ok(client) => remove_task(&client, &record.id).await,
            Err(_) => {
                if let Err(error) = self.shims.delete_dead(&record.id, bundle).await {
                    tracing::warn!(container = %record.id, %error, "cleaning up the task of an interrupted start");
                }
            }
        }
        self.shutdown_shim_if_idle(address.trim()).await;
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


/// Deletes the task `id` from its shim; a started one is killed first.
async fn remove_task(client: &containerd_shim_protos::shim_async::TaskClient, id: &str) {
    let delete = DeleteRequest { id: id.to_string(), ..Default::default() };
    if client.delete(context(), &delete).await.is_ok() {
        return;
    }
    let kill = KillRequest { id: id.to_string(), signal: libc::SIGKILL as u32, all: true, ..Default::default() };
    if client.kill(context(), &kill).await.is_err() {
        return;
    }
    let wait = WaitRequest { id: id.to_string(), ..Default::default() };
    let _ = tokio::time::timeout(UNDO_WAIT, client.wait(context(), &wait)).await;
    if let Err(error) = client.delete(context(), &delete).await {
        tracing::warn!(container = %id, %error, "deleting the task of an interrupted start");
    }
}
