//! A front door's own part of a container record (`spec.front`), changed in place: the
//! Docker door keeps its restart count and manual-stop mark there.
use super::*;

impl Core {
    /// Applies `change` to the container's `front` and stores it, in one transaction
    /// under its pod's lock, so no concurrent update of the record is lost.
    pub async fn update_front(&self, namespace: &str, id: &str, change: impl FnOnce(&mut serde_json::Value)) -> CoreResult<()> {
        let (_guard, _) = self.lock_pod_of(namespace, id).await?;
        let key = record_key(namespace, id);
        self.store.write(|txn| {
            let mut record: ContainerRecord = txn.get(CONTAINERS, &key)?.ok_or_else(|| CoreError::NotFound(format!("container {id}")))?;
            change(&mut record.spec.front);
            txn.put(CONTAINERS, &key, &record)?;
            Ok(())
        })
    }
}
