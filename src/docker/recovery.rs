//! The Docker façade's share of start-up recovery, run after the core's and before the
//! socket serves. A Docker container is a sandbox plus a container record made in two
//! steps, and removed in two steps (the sandbox, then the façade's own directories):
//! berthd killed between them leaves a sandbox that no container names, or directories
//! that no sandbox owns. Both go here, so a cut create is undone and a cut removal
//! finished; `docker ps -a` never showed either.
use std::collections::BTreeSet;
use std::path::Path;

use super::containers::discard_sandbox;
use super::NAMESPACE;

/// Removes sandboxes without a container, then directories without a sandbox.
pub async fn settle(docker: &super::Docker) {
    let (Ok(sandboxes), Ok(containers)) = (docker.core.list_sandboxes(NAMESPACE), docker.core.list_containers(NAMESPACE)) else {
        tracing::warn!("docker recovery: the records could not be listed");
        return;
    };
    let named: BTreeSet<&str> = containers.iter().map(|c| c.spec.sandbox_id.as_str()).collect();
    let mut kept = BTreeSet::new();
    for sandbox in &sandboxes {
        if named.contains(sandbox.id.as_str()) {
            kept.insert(sandbox.id.clone());
            continue;
        }
        tracing::info!(sandbox = %sandbox.id, name = %sandbox.spec.name, "removing a docker sandbox whose container was never made (or whose removal was cut short)");
        discard_sandbox(docker, &sandbox.id).await;
    }
    for base in [docker.core.paths.root.join("docker"), docker.core.paths.state.join("docker")] {
        remove_unowned(&base, &kept);
    }
}

/// Removes the per-container directories under `base` (named by a 64-hex id) that no
/// sandbox owns; other entries (volumes, exec pipes, scratch) are not the sweep's.
fn remove_unowned(base: &Path, owners: &BTreeSet<String>) {
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_id = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id && !owners.contains(&name) {
            tracing::info!(directory = %entry.path().display(), "removing a docker container's directory left by a cut removal");
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(directory = %entry.path().display(), %error, "removing a left directory");
            }
        }
    }
}
