//! Intent records: before an operation that changes a live object in several steps
//! (starting a container, stopping or removing a pod, removing a container) touches the
//! kernel or the disk, it writes what it is about to do in the store, and it erases the
//! record once done. A daemon killed in between finds the record at start-up, and
//! recovery undoes the start or finishes the stop or removal (see `recovery.rs`).
//! Creations need no separate record: their incomplete sandbox or container record
//! (`complete: false`, written with the name's reservation) is their intent.
use serde::{Deserialize, Serialize};

use super::*;
use crate::store::Table;

/// `<operation>/<namespace>/<id>` -> the intent.
pub const INTENTS: Table<Intent> = Table::new("intents");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    StartContainer,
    StopSandbox,
    RemoveSandbox,
    RemoveContainer,
}

/// One operation under way on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub operation: Operation,
    pub namespace: String,
    pub id: String,
}

impl Intent {
    pub fn new(operation: Operation, namespace: &str, id: &str) -> Intent {
        Intent { operation, namespace: namespace.to_string(), id: id.to_string() }
    }

    fn key(&self) -> String {
        format!("{:?}/{}/{}", self.operation, self.namespace, self.id)
    }
}

impl Core {
    /// Writes `intent` before its first step.
    pub(crate) fn record_intent(&self, intent: &Intent) -> CoreResult<()> {
        self.store.write(|txn| txn.put(INTENTS, &intent.key(), intent))?;
        Ok(())
    }

    /// Erases `intent` after its last step (or after its failure was dealt with).
    pub(crate) fn clear_intent(&self, intent: &Intent) -> CoreResult<()> {
        self.store.write(|txn| txn.delete(INTENTS, &intent.key()))?;
        Ok(())
    }

    /// Runs `operation` between recording and erasing `intent`; the record is erased
    /// whether the operation succeeded or failed (a failure leaves a state the
    /// operation itself reported), so only a dead daemon leaves one behind.
    pub(crate) async fn with_intent<T>(&self, intent: Intent, operation: impl std::future::Future<Output = CoreResult<T>>) -> CoreResult<T> {
        self.record_intent(&intent)?;
        let outcome = operation.await;
        self.clear_intent(&intent)?;
        outcome
    }

    pub(crate) fn pending_intents(&self) -> CoreResult<Vec<Intent>> {
        let listed = self.store.read(|txn| txn.list(INTENTS))?;
        Ok(listed.into_iter().map(|(_, intent)| intent).collect())
    }
}
