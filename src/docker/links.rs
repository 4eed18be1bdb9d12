//! Docker's legacy `--link NAME[:ALIAS]` (`HostConfig.Links`): checked at create (the
//! peer must exist and have a network of its own), handed to the network module as
//! [`LinkAlias`]es (the embedded DNS answers them on user-defined networks, the hosts
//! file names them on the default bridge), turned into the `<ALIAS>_PORT_…` and
//! `<ALIAS>_NAME` variables on the default bridge, shown by inspect as dockerd does,
//! and checked again at start (a peer that is not running refuses the start).
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::containers::{docker_id, find};
use super::create::Front;
use super::error::{DockerError, DockerResult};
use super::NAMESPACE;
use crate::core::{ContainerRecord, ContainerState};
use crate::network::LinkAlias;

/// One `--link`: the peer as found, and the alias it is known by.
#[derive(Debug, Clone)]
pub struct Link {
    pub peer: ContainerRecord,
    pub alias: String,
}

/// `NAME` or `NAME:ALIAS` (a leading `/` on either is dropped), as dockerd parses them.
pub fn parse(text: &str) -> DockerResult<(String, String)> {
    let parts: Vec<&str> = text.split(':').collect();
    let trim = |s: &str| s.trim_start_matches('/').to_string();
    match parts.as_slice() {
        [name] if !name.is_empty() => Ok((trim(name), trim(name))),
        [name, alias] if !name.is_empty() && !alias.is_empty() => Ok((trim(name), trim(alias))),
        _ => Err(DockerError::bad_request(format!("invalid link format: {text}"))),
    }
}

const HOST_AND_LINKS: &str = "conflicting options: host type networking can't be used with links. This would result in undefined behavior";

/// The links of a create, each peer found (400 with dockerd's words when not).
pub fn resolve(docker: &super::Docker, texts: &[String], own_mode: &str) -> DockerResult<Vec<Link>> {
    if !texts.is_empty() && own_mode == "host" {
        return Err(DockerError::bad_request(HOST_AND_LINKS));
    }
    let mut links = Vec::new();
    for text in texts {
        let (name, alias) = parse(text)?;
        let peer = find(&docker.core, &name).map_err(|e| match e.status {
            StatusCode::NOT_FOUND => DockerError::bad_request(format!("could not get container for {name}: {}", e.message)),
            _ => e,
        })?;
        if Front::of(&peer).network == "host" {
            return Err(DockerError::bad_request(HOST_AND_LINKS));
        }
        links.push(Link { peer, alias });
    }
    Ok(links)
}

/// What the network module is told: the peer's sandbox and the alias.
pub fn link_aliases(links: &[Link]) -> Vec<LinkAlias> {
    links.iter().map(|l| LinkAlias { target: docker_id(&l.peer).to_string(), alias: l.alias.clone() }).collect()
}

/// The links as kept in the container's front (`peer:alias`, the peer by name).
pub fn stored(links: &[Link]) -> Vec<String> {
    links.iter().map(|l| format!("{}:{}", l.peer.spec.name, l.alias)).collect()
}

/// The stored links of `record`, peers found again (those gone are skipped).
fn current(docker: &super::Docker, record: &ContainerRecord) -> Vec<Link> {
    let front = Front::of(record);
    let texts: Vec<String> = front.host_config.get("Links").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
    texts
        .iter()
        .filter_map(|text| parse(text).ok())
        .filter_map(|(name, alias)| find(&docker.core, &name).ok().map(|peer| Link { peer, alias }))
        .collect()
}

/// Whether links of this network mode are legacy ones (the default bridge), which
/// inspect lists in HostConfig; on user-defined networks they are per endpoint.
fn legacy(mode: &str) -> bool {
    mode == "bridge" || mode == "default"
}

/// `HostConfig.Links` as dockerd shows it: `/peer:/me/alias` on the default bridge,
/// null on a user-defined network.
pub fn inspect_host_links(docker: &super::Docker, record: &ContainerRecord) -> Value {
    if !legacy(&Front::of(record).network) {
        return Value::Null;
    }
    let shown: Vec<String> = current(docker, record).iter().map(|l| format!("/{}:/{}/{}", l.peer.spec.name, record.spec.name, l.alias)).collect();
    if shown.is_empty() {
        Value::Null
    } else {
        json!(shown)
    }
}

/// `NetworkSettings.Networks[NET].Links` on the user-defined network the container
/// was created on: `peer:alias`.
pub fn inspect_endpoint_links(docker: &super::Docker, record: &ContainerRecord, network: &str) -> Value {
    let front = Front::of(record);
    if legacy(&front.network) || front.network != network {
        return Value::Null;
    }
    let shown: Vec<String> = current(docker, record).iter().map(|l| format!("{}:{}", l.peer.spec.name, l.alias)).collect();
    if shown.is_empty() {
        Value::Null
    } else {
        json!(shown)
    }
}

/// At start, on the default bridge: every peer must be running (500 as dockerd's).
pub fn check_peers_running(docker: &super::Docker, record: &ContainerRecord) -> DockerResult<()> {
    if !legacy(&Front::of(record).network) {
        return Ok(());
    }
    for link in current(docker, record) {
        if link.peer.state != ContainerState::Running {
            let message = format!("Cannot link to a non running container: /{} AS /{}/{}", link.peer.spec.name, record.spec.name, link.alias);
            return Err(DockerError::internal(message));
        }
    }
    Ok(())
}

/// The variables a legacy link gives (dockerd's `links.Link.ToEnv`): `ALIAS_NAME`,
/// `ALIAS_PORT` and per exposed port `ALIAS_PORT_80_TCP{,_ADDR,_PORT,_PROTO}`, and the
/// peer's own variables as `ALIAS_ENV_KEY`.
pub fn environment(docker: &super::Docker, me: &str, links: &[Link], mode: &str) -> Vec<(String, String)> {
    if !legacy(mode) {
        return Vec::new();
    }
    let mut env = Vec::new();
    for link in links {
        let Some(ip) = peer_ip(docker, &link.peer) else { continue };
        env.extend(one_link_env(me, link, &ip));
    }
    env
}

fn peer_ip(docker: &super::Docker, peer: &ContainerRecord) -> Option<String> {
    let sandbox = docker.core.sandbox(NAMESPACE, docker_id(peer)).ok()?;
    sandbox.interfaces.first().map(|i| i.ip.to_string())
}

/// The peer's exposed ports, lowest first: (port, protocol).
fn exposed_ports(front: &Front) -> Vec<(u16, String)> {
    let mut ports: Vec<(u16, String)> = front
        .config
        .get("ExposedPorts")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|o| o.keys())
        .filter_map(|key| {
            let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
            port.parse().ok().map(|p| (p, protocol.to_string()))
        })
        .collect();
    ports.sort();
    ports
}

fn one_link_env(me: &str, link: &Link, ip: &str) -> Vec<(String, String)> {
    let prefix = link.alias.to_ascii_uppercase().replace('-', "_");
    let front = Front::of(&link.peer);
    let mut env = vec![(format!("{prefix}_NAME"), format!("/{me}/{}", link.alias))];
    let ports = exposed_ports(&front);
    if let Some((port, protocol)) = ports.first() {
        env.push((format!("{prefix}_PORT"), format!("{protocol}://{ip}:{port}")));
    }
    for (port, protocol) in &ports {
        let key = format!("{prefix}_PORT_{port}_{}", protocol.to_ascii_uppercase());
        env.push((key.clone(), format!("{protocol}://{ip}:{port}")));
        env.push((format!("{key}_ADDR"), ip.to_string()));
        env.push((format!("{key}_PORT"), port.to_string()));
        env.push((format!("{key}_PROTO"), protocol.clone()));
    }
    let peer_env = front.config.get("Env").and_then(Value::as_array).cloned().unwrap_or_default();
    for entry in peer_env.iter().filter_map(Value::as_str) {
        let Some((key, value)) = entry.split_once('=') else { continue };
        if key != "HOME" && key != "PATH" {
            env.push((format!("{prefix}_ENV_{key}"), value.to_string()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_as_dockerd_does() {
        assert_eq!(parse("db").unwrap(), ("db".to_string(), "db".to_string()));
        assert_eq!(parse("/db:/primary").unwrap(), ("db".to_string(), "primary".to_string()));
        assert!(parse("a:b:c").is_err());
        assert!(parse("").is_err());
        assert!(parse("db:").is_err());
    }
}
