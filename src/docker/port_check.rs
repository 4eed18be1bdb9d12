//! Published ports are taken when a container starts, as in dockerd: a create never
//! checks them, and a start is refused (HTTP 500, dockerd's message) when a running
//! or starting container holds one of the same host ports. A stopped container never
//! blocks one; if its endpoints are still held (its exit not handled yet), they are
//! given back first. Called with `Docker::network_lock` held.
use std::collections::HashMap;

use super::containers::{docker_containers, docker_id};
use super::networks::endpoint_id;
use super::{DockerError, DockerResult, NAMESPACE};
use crate::core::{ContainerRecord, ContainerState, PortMapping, SandboxRecord};

/// Same protocol and port, and one host address covers the other.
fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol && a.host_port == b.host_port && (a.host_ip.is_empty() || b.host_ip.is_empty() || a.host_ip == b.host_ip)
}

/// dockerd's refusal: `Bind for IP:PORT failed: port is already allocated`, on the
/// endpoint of the container's first network.
fn allocated(docker: &super::Docker, record: &ContainerRecord, sandbox: &SandboxRecord, mapping: &PortMapping) -> DockerError {
    let network = sandbox.spec.networks.as_ref().and_then(|n| n.first()).map(|n| n.name.clone());
    let network = network.unwrap_or_else(|| docker.core.network.config().default_network.clone());
    let ip = if mapping.host_ip.is_empty() { "0.0.0.0" } else { &mapping.host_ip };
    DockerError::internal(format!(
        "driver failed programming external connectivity on endpoint {} ({}): Bind for {ip}:{} failed: port is already allocated",
        record.spec.name,
        endpoint_id(docker_id(record), &network),
        mapping.host_port
    ))
}

/// Whether the container of `sandbox_id` runs or is starting.
fn active(docker: &super::Docker, containers: &HashMap<&str, &ContainerRecord>, sandbox_id: &str) -> bool {
    let Some(container) = containers.get(sandbox_id) else { return false };
    container.state == ContainerState::Running || docker.starting.lock().is_ok_and(|starting| starting.contains(&container.id))
}

/// Refuses the start of `record` when an active container holds one of its host ports.
pub async fn check_free(docker: &super::Docker, record: &ContainerRecord) -> DockerResult<()> {
    let sandboxes = docker.core.list_sandboxes(NAMESPACE)?;
    let Some(own) = sandboxes.iter().find(|s| s.id == docker_id(record)) else { return Ok(()) };
    if own.spec.port_mappings.is_empty() {
        return Ok(());
    }
    let all = docker_containers(&docker.core)?;
    let containers: HashMap<&str, &ContainerRecord> = all.iter().map(|c| (docker_id(c), c)).collect();
    let holders = sandboxes.iter().filter(|s| s.id != own.id && !s.network_released && !s.interfaces.is_empty());
    for holder in holders {
        let Some(mapping) = own.spec.port_mappings.iter().find(|m| holder.spec.port_mappings.iter().any(|o| clash(m, o))) else { continue };
        if active(docker, &containers, &holder.id) {
            return Err(allocated(docker, record, own, mapping));
        }
        if let Some(stale) = containers.get(holder.id.as_str()) {
            super::endpoint_release::release_held(docker, &stale.id).await;
        }
    }
    Ok(())
}
