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
use crate::core::{ContainerRecord, ContainerState};

/// Whether the container is one whose sandbox may give its endpoints back now: not
/// running, and no running container shares its network namespace.
fn idle(docker: &super::Docker, record: &ContainerRecord) -> bool {
    if record.state == ContainerState::Running {
        return false;
    }
    let Ok(containers) = docker_containers(&docker.core) else { return false };
    let Ok(sandboxes) = docker.core.list_sandboxes(NAMESPACE) else { return false };
    let joiners: Vec<&str> = sandboxes.iter().filter(|s| s.spec.network_of.as_deref() == Some(docker_id(record))).map(|s| s.id.as_str()).collect();
    !containers.iter().any(|c| joiners.contains(&docker_id(c)) && c.state == ContainerState::Running)
}

/// Gives the endpoints of `record`'s sandbox back when it is idle; the caller holds
/// `network_lock`.
pub(super) async fn release_held(docker: &super::Docker, container_id: &str) {
    if docker.starting.lock().is_ok_and(|starting| starting.contains(container_id)) {
        return;
    }
    let Ok(record) = docker.core.container(NAMESPACE, container_id) else { return };
    if !idle(docker, &record) {
        return;
    }
    if let Err(error) = docker.core.release_network(NAMESPACE, docker_id(&record)).await {
        tracing::warn!(container = %docker_id(&record), %error, "giving the stopped container's endpoints back");
    }
}

/// After a stop or an exit: the container's endpoints go back (if it is still stopped).
pub async fn release(docker: &super::Docker, container_id: &str) {
    let _guard = docker.network_lock.lock().await;
    release_held(docker, container_id).await;
}

/// Every stopped container's endpoints go back: before a network is removed or
/// listed with its containers, and at start-up (exits berthd did not see).
pub async fn release_stopped(docker: &super::Docker) {
    let _guard = docker.network_lock.lock().await;
    let Ok(containers) = docker_containers(&docker.core) else { return };
    for record in containers.iter().filter(|c| c.state != ContainerState::Running) {
        if docker.core.sandbox(NAMESPACE, docker_id(record)).is_ok_and(|s| !s.network_released && !s.interfaces.is_empty()) {
            release_held(docker, &record.id).await;
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
