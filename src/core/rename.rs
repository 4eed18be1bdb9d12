//! Renaming a container (Docker's rename): its name claim moves in one transaction,
//! with its sandbox's when the sandbox bears the same name (a Docker container's own).
use super::*;

impl Core {
    pub async fn rename_container(&self, namespace: &str, id: &str, new_name: &str) -> CoreResult<()> {
        if new_name.is_empty() {
            return Err(CoreError::InvalidArgument("the new name must not be empty".into()));
        }
        let (_guard, mut record) = self.lock_pod_of(namespace, id).await?;
        let sandbox_key = record_key(namespace, &record.spec.sandbox_id);
        let old_name = record.spec.name.clone();
        self.store.write(|txn| {
            for kind in ["container", "sandbox"] {
                if let Some(owner) = txn.get(NAMES, &name_key(namespace, kind, new_name))? {
                    return Err(CoreError::AlreadyExists(format!("a {kind} named {new_name:?} already exists ({owner})")));
                }
            }
            txn.delete(NAMES, &name_key(namespace, "container", &old_name))?;
            txn.put(NAMES, &name_key(namespace, "container", new_name), &record.id)?;
            if let Some(mut sandbox) = txn.get(SANDBOXES, &sandbox_key)? {
                if sandbox.spec.name == old_name {
                    txn.delete(NAMES, &name_key(namespace, "sandbox", &old_name))?;
                    txn.put(NAMES, &name_key(namespace, "sandbox", new_name), &sandbox.id)?;
                    sandbox.spec.name = new_name.to_string();
                    txn.put(SANDBOXES, &sandbox_key, &sandbox)?;
                }
            }
            record.spec.name = new_name.to_string();
            if let Some(front) = record.spec.front.as_object_mut() {
                front.insert("name".into(), serde_json::json!(new_name));
            }
            txn.put(CONTAINERS, &record_key(namespace, &record.id), &record)?;
            Ok(())
        })
    }
}
