//! Only running containers hold network endpoints, as in dockerd: a container is
//! created without any (`Core::run_sandbox_unplugged`), one that stops gives its
//! endpoints, addresses and published ports back, and each takes them just before it
//! starts, failing with `network NAME not found` when one of its networks was removed
//! meanwhile, or with dockerd's `port is already allocated` (`port_check`). The moves
//! are serialized by `Docker::network_lock`; a start holds it only while it takes its
//! endpoints back and marks itself as starting (`Starting`), which no release touches.
use super::containers::{docker_containers, docker_id};
use super::error::DockerResult;
use super::networks::core_network_error;
use super::NAMESPACE;
use crate::core::{ContainerRecord, ContainerState, SandboxRecord};
use std::collections::{HashMap, HashSet};

/// The Docker ids of the running containers.
fn running_ids(containers: &[ContainerRecord]) -> HashSet<&str> {
    containers.iter().filter(|c| c.state == ContainerState::Running).map(docker_id).collect()
}

/// Whether a sandbox that is not running may give its endpoints back now: no running
/// container shares its network namespace.
fn unshared(sandbox_id: &str, sandboxes: &[SandboxRecord], running: &HashSet<&str>) -> bool {
    !sandboxes.iter().any(|s| s.spec.network_of.as_deref() == Some(sandbox_id) && running.contains(s.id.as_str()))
}

fn is_starting(docker: &super::Docker, container_id: &str) -> bool {
    docker.starting.lock().is_ok_and(|starting| starting.contains(container_id))
}

async fn give_back(docker: &super::Docker, sandbox_id: &str) {
    if let Err(error) = docker.core.release_network(NAMESPACE, sandbox_id).await {
        tracing::warn!(container = %sandbox_id, %error, "giving the stopped container's endpoints back");
    }
}

/// Gives the endpoints of the container `container_id` back when it is not running
/// (nor starting) and shares its network with no running container; the caller holds
/// `network_lock`.
pub(super) async fn release_held(docker: &super::Docker, container_id: &str) {
    if is_starting(docker, container_id) {
        return;
    }
    let Ok(record) = docker.core.container(NAMESPACE, container_id) else { return };
    if record.state == ContainerState::Running {
        return;
    }
    let (Ok(containers), Ok(sandboxes)) = (docker_containers(&docker.core), docker.core.list_sandboxes(NAMESPACE)) else { return };
    if unshared(docker_id(&record), &sandboxes, &running_ids(&containers)) {
        give_back(docker, docker_id(&record)).await;
    }
}

/// After a stop or an exit: the container's endpoints go back (if it is still stopped).
pub async fn release(docker: &super::Docker, container_id: &str) {
    let _guard = docker.network_lock.lock().await;
    release_held(docker, container_id).await;
}

/// Every stopped container's endpoints go back: before a network is removed or
/// pruned, and at start-up (exits berthd did not see). One listing of the sandboxes
/// and one of the containers; only sandboxes still holding endpoints are looked at.
pub async fn release_stopped(docker: &super::Docker) {
    let _guard = docker.network_lock.lock().await;
    let (Ok(containers), Ok(sandboxes)) = (docker_containers(&docker.core), docker.core.list_sandboxes(NAMESPACE)) else { return };
    let running = running_ids(&containers);
    let core_ids: HashMap<&str, &str> = containers.iter().map(|c| (docker_id(c), c.id.as_str())).collect();
    let holders = sandboxes.iter().filter(|s| !s.network_released && !s.interfaces.is_empty() && !running.contains(s.id.as_str()));
    for holder in holders {
        let Some(container_id) = core_ids.get(holder.id.as_str()) else { continue };
        if !is_starting(docker, container_id) && unshared(&holder.id, &sandboxes, &running) {
            give_back(docker, &holder.id).await;
        }
    }
}

/// Before a start: the networks the container asks for, attached again, and the
/// container marked as starting until the returned guard is dropped.
pub async fn restore<'a>(docker: &'a super::Docker, record: &ContainerRecord) -> DockerResult<Starting<'a>> {
    let _guard = docker.network_lock.lock().await;
    super::port_check::check_free(docker, record).await?;
    docker.core.restore_network(NAMESPACE, docker_id(record)).await.map_err(core_network_error)?;
    if let Ok(mut starting) = docker.starting.lock() {
        starting.insert(record.id.clone());
    }
    Ok(Starting { docker, id: record.id.clone() })
}

/// A container marked as starting: its endpoints are not released until this drops.
pub struct Starting<'a> {
    docker: &'a super::Docker,
    id: String,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if let Ok(mut starting) = self.docker.starting.lock() {
            starting.remove(&self.id);
        }
    }
}
