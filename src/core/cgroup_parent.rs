//! A pod's own cgroup parent. Each container's runtime removes only the directories it
//! made, so a pod parent made by the pod's first container would outlive the pod when
//! that container is removed before its siblings. Instead berthd claims the parent when
//! none exists before the pod's first container (then the runtime finds it made) and
//! removes it with the pod. A parent that existed before (the kubelet's, systemd's) is
//! never touched.
use std::path::Path;

use berth_runtime::cgroups::SharedParent;

use super::*;

impl Core {
    /// Called under the pod's lock, before a container with `cgroups_path` is created
    /// in `sandbox`: notes in the pod's record that berth owns the container's parent
    /// directory if the pod has a parent of its own and no one has made it yet.
    pub(crate) fn claim_cgroup_parent(&self, sandbox: &SandboxRecord, cgroups_path: &str) -> CoreResult<()> {
        if sandbox.spec.cgroup_parent.is_empty() {
            return Ok(());
        }
        let Some(parent) = Path::new(cgroups_path).parent().map(|p| p.display().to_string()) else { return Ok(()) };
        let key = record_key(&sandbox.namespace, &sandbox.id);
        let already_claimed = self.store.read(|txn| txn.get::<SandboxRecord>(SANDBOXES, &key))?.is_some_and(|record| record.owned_cgroup_parent.is_some());
        if already_claimed || SharedParent::locate(Path::new(&parent)).map_or(true, |dir| dir.exists()) {
            return Ok(());
        }
        self.store.write(|txn| {
            if let Some(mut record) = txn.get::<SandboxRecord>(SANDBOXES, &key)? {
                record.owned_cgroup_parent = Some(parent.clone());
                txn.put(SANDBOXES, &key, &record)?;
            }
            Ok::<(), StoreError>(())
        })?;
        Ok(())
    }

    /// Removes the pod's cgroup parent if berth claimed it (its containers are gone).
    pub(crate) fn remove_cgroup_parent(&self, sandbox: &SandboxRecord) {
        let key = record_key(&sandbox.namespace, &sandbox.id);
        let claimed = self.store.read(|txn| txn.get::<SandboxRecord>(SANDBOXES, &key)).ok().flatten().and_then(|record| record.owned_cgroup_parent);
        let Some(parent) = claimed else { return };
        let outcome = SharedParent::locate(Path::new(&parent)).and_then(|dir| dir.remove());
        if let Err(error) = outcome {
            tracing::warn!(sandbox = %sandbox.id, %parent, %error, "removing the pod's cgroup parent");
        }
    }
}
