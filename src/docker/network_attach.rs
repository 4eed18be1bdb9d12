//! A container's side of Docker networking: the network mode and endpoint settings of a
//! create (`--network NAME|host|none|container:NAME`, `--network-alias`, `--ip`),
//! `POST /networks/{id}/connect` and `/disconnect` on created or running containers,
//! and the `NetworkSettings.Networks` that inspect and list show.
use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::{docker_id, find, short};
use super::create::Front;
use super::error::{DockerError, DockerResult};
use super::networks::{core_network_error, endpoint_id, find_network, DockerNetwork};
use super::NAMESPACE;
use crate::core::{ContainerRecord, CoreError, NamespaceMode, SandboxNetwork, SandboxRecord};
use crate::network::NetworkError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
}

/// Docker's EndpointSettings, the parts a create or connect asks for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct EndpointSettings {
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
}

impl EndpointSettings {
    fn ipv4(&self) -> String {
        self.ipam_config.as_ref().and_then(|c| c.ipv4_address.clone()).unwrap_or_default()
    }
    fn aliases(&self) -> Vec<String> {
        self.aliases.clone().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, EndpointSettings>>,
}

/// How a new container's sandbox is networked.
#[derive(Debug, Clone, Default)]
pub struct NetworkPlan {
    pub namespace: NamespaceMode,
    pub networks: Option<Vec<SandboxNetwork>>,
    /// HostConfig.NetworkMode as inspect shows it.
    pub mode: String,
    /// `container:NAME`: the sandbox whose network namespace (and name) is joined.
    pub network_of: Option<String>,
    pub hostname: Option<String>,
}

fn forbidden(message: impl Into<String>) -> DockerError {
    DockerError::new(StatusCode::FORBIDDEN, message)
}

/// One endpoint of a create or connect: the network module's name and the settings,
/// refused on the default bridge where dockerd refuses them.
fn endpoint_for(network: &DockerNetwork, settings: &EndpointSettings) -> DockerResult<SandboxNetwork> {
    let record = network.record.as_ref().ok_or_else(|| forbidden(format!("container cannot be connected to the {} network", network.name)))?;
    if !record.user_defined && !settings.ipv4().is_empty() {
        return Err(DockerError::bad_request("user specified IP address is supported on user defined networks only"));
    }
    if !record.user_defined && !settings.aliases().is_empty() {
        return Err(DockerError::bad_request("network-scoped alias is supported only for containers in user defined networks"));
    }
    Ok(SandboxNetwork { name: record.name.clone(), aliases: settings.aliases(), ipv4: settings.ipv4() })
}

/// The network mode and endpoint settings of a create, checked.
pub fn plan(docker: &super::Docker, mode: &str, config: &NetworkingConfig) -> DockerResult<NetworkPlan> {
    let default_to_bridge = |name: &str| if name.is_empty() || name == "default" { "bridge".to_string() } else { name.to_string() };
    let endpoints: BTreeMap<String, EndpointSettings> =
        config.endpoints_config.clone().unwrap_or_default().into_iter().map(|(name, settings)| (default_to_bridge(&name), settings)).collect();
    let mode = default_to_bridge(mode);
    let mode = mode.as_str();
    match mode {
        "host" => return Ok(NetworkPlan { namespace: NamespaceMode::Node, mode: mode.into(), ..NetworkPlan::default() }),
        "none" => return Ok(NetworkPlan { networks: Some(Vec::new()), mode: mode.into(), ..NetworkPlan::default() }),
        _ => {}
    }
    if let Some(name) = mode.strip_prefix("container:") {
        return join_plan(docker, name);
    }
    let primary = find_network(docker, mode)?;
    if primary.record.is_none() {
        return plan(docker, &primary.name, config);
    }
    let mut networks = vec![endpoint_for(&primary, endpoints.get(mode).unwrap_or(&EndpointSettings::default()))?];
    for (name, settings) in endpoints.iter().filter(|(name, _)| name.as_str() != mode) {
        let network = find_network(docker, name)?;
        let endpoint = endpoint_for(&network, settings)?;
        if !networks.iter().any(|n| n.name == endpoint.name) {
            networks.push(endpoint);
        }
    }
    let default_only = networks.len() == 1 && !primary.record.as_ref().is_some_and(|r| r.user_defined);
    Ok(NetworkPlan { networks: if default_only { None } else { Some(networks) }, mode: mode.into(), ..NetworkPlan::default() })
}

/// `container:NAME`: the other container's network namespace and hostname.
fn join_plan(docker: &super::Docker, name: &str) -> DockerResult<NetworkPlan> {
    let target = find(&docker.core, name)?;
    let sandbox = docker.core.sandbox(NAMESPACE, docker_id(&target))?;
    if sandbox.netns.is_none() {
        return Err(DockerError::bad_request(format!("cannot join the network of container {name}: it uses the host's network")));
    }
    Ok(NetworkPlan {
        networks: Some(Vec::new()),
        mode: format!("container:{}", sandbox.id),
        network_of: Some(sandbox.id.clone()),
        hostname: Some(sandbox.spec.hostname.clone()),
        ..NetworkPlan::default()
    })
}

/// The name Docker shows for the network module's network `name`.
fn docker_name(docker: &super::Docker, name: &str) -> String {
    if name == docker.core.network.config().default_network { "bridge".into() } else { name.to_string() }
}

fn empty_endpoint(network_id: &str, sandbox_id: &str, network: &str) -> Value {
    json!({
        "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null, "GwPriority": 0,
        "NetworkID": network_id, "EndpointID": endpoint_id(sandbox_id, network), "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
    })
}

/// The container's endpoints: (Docker network name, EndpointSettings as inspect shows).
pub fn endpoints_of(docker: &super::Docker, record: &ContainerRecord, sandbox: Option<&SandboxRecord>) -> Vec<(String, Value)> {
    let front = Front::of(record);
    let sandbox_id = docker_id(record);
    if front.network == "host" || front.network == "none" {
        let id = find_network(docker, &front.network).map(|n| n.id).unwrap_or_default();
        return vec![(front.network.clone(), empty_endpoint(&id, sandbox_id, &front.network))];
    }
    let Some(sandbox) = sandbox else { return Vec::new() };
    if sandbox.network_released {
        return configured_endpoints(docker, sandbox);
    }
    sandbox.interfaces.iter().map(|interface| endpoint_json(docker, record, sandbox, interface)).collect()
}

/// A stopped container's networks: what it asks for, without addresses (it holds none).
fn configured_endpoints(docker: &super::Docker, sandbox: &SandboxRecord) -> Vec<(String, Value)> {
    let default = || vec![SandboxNetwork { name: docker.core.network.config().default_network.clone(), ..SandboxNetwork::default() }];
    let asked = sandbox.spec.networks.clone().unwrap_or_else(default);
    let shown = asked.iter().map(|network| {
        let name = docker_name(docker, &network.name);
        let id = find_network(docker, &name).map(|n| n.id).unwrap_or_default();
        let mut endpoint = empty_endpoint(&id, &sandbox.id, &network.name);
        endpoint["EndpointID"] = json!("");
        endpoint["IPAMConfig"] = if network.ipv4.is_empty() { Value::Null } else { json!({"IPv4Address": network.ipv4}) };
        endpoint["Aliases"] = if network.aliases.is_empty() { Value::Null } else { json!(network.aliases) };
        (name, endpoint)
    });
    shown.collect()
}

fn endpoint_json(docker: &super::Docker, record: &ContainerRecord, sandbox: &SandboxRecord, interface: &crate::network::InterfaceInfo) -> (String, Value) {
    let name = docker_name(docker, &interface.network);
    let network = find_network(docker, &name).ok();
    let asked = sandbox.spec.networks.iter().flatten().find(|n| n.name == interface.network).cloned().unwrap_or_default();
    let user_defined = network.as_ref().and_then(|n| n.record.as_ref()).is_some_and(|r| r.user_defined);
    let mut endpoint = empty_endpoint(&network.map(|n| n.id).unwrap_or_default(), &sandbox.id, &interface.network);
    endpoint["IPAMConfig"] = if asked.ipv4.is_empty() { Value::Null } else { json!({"IPv4Address": asked.ipv4}) };
    endpoint["Aliases"] = if asked.aliases.is_empty() { Value::Null } else { json!(asked.aliases) };
    endpoint["Links"] = super::links::inspect_endpoint_links(docker, record, &name);
    if user_defined && super::request_api_minor() < 45 {
        // For API versions before 1.45 dockerd lists the short id among the aliases;
        // compose 1.29 (API 1.38) looks for it before reconnecting a container.
        let mut aliases = asked.aliases.clone();
        aliases.push(short(&sandbox.id).to_string());
        endpoint["Aliases"] = json!(aliases);
    }
    endpoint["MacAddress"] = json!(interface.mac);
    endpoint["Gateway"] = json!(interface.gateway.map(|g| g.to_string()).unwrap_or_default());
    endpoint["IPAddress"] = json!(interface.ip.to_string());
    endpoint["IPPrefixLen"] = json!(interface.prefix);
    if user_defined {
        endpoint["DNSNames"] = json!(dns_names(record, sandbox, &asked.aliases));
    }
    (name, endpoint)
}

/// dockerd's DNSNames of an endpoint on a user network: the name, the endpoint's
/// aliases, the short id and the hostname, each once, in that order.
fn dns_names(record: &ContainerRecord, sandbox: &SandboxRecord, aliases: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let candidates = std::iter::once(&record.spec.name).chain(aliases).cloned().chain([short(&sandbox.id).to_string(), sandbox.spec.hostname.clone()]);
    for name in candidates {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Whether the container has an endpoint on `network` (name or id), for `ps --filter`.
pub fn on_network(docker: &super::Docker, record: &ContainerRecord, network: &str) -> bool {
    let Ok(wanted) = find_network(docker, network) else { return false };
    let sandbox = docker.core.sandbox(NAMESPACE, docker_id(record)).ok();
    endpoints_of(docker, record, sandbox.as_ref()).iter().any(|(name, _)| *name == wanted.name)
}

/// `NetworkSettings.Networks`.
pub fn networks_json(docker: &super::Docker, record: &ContainerRecord, sandbox: Option<&SandboxRecord>) -> Value {
    Value::Object(endpoints_of(docker, record, sandbox).into_iter().collect())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointSettings>,
    force: bool,
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> DockerResult<T> {
    serde_json::from_slice(bytes).map_err(|e| DockerError::bad_request(format!("invalid JSON: {e}")))
}

/// A container whose network namespace is its own (so networks can come and go).
fn check_own_namespace(front: &Front) -> DockerResult<()> {
    match front.network.as_str() {
        "host" => Err(forbidden("container cannot be disconnected from host network or connected to host network")),
        "none" => Err(forbidden("container cannot be disconnected from none network or connected to none network")),
        mode if mode.starts_with("container:") => Err(forbidden("container sharing network namespace with another container or host cannot be connected to any other network")),
        _ => Ok(()),
    }
}

fn connected_to(docker: &super::Docker, record: &ContainerRecord, network: &str) -> bool {
    let Ok(sandbox) = docker.core.sandbox(NAMESPACE, docker_id(record)) else { return false };
    if sandbox.network_released {
        let default = docker.core.network.config().default_network == network;
        return sandbox.spec.networks.as_ref().map_or(default, |asked| asked.iter().any(|n| n.name == network));
    }
    sandbox.interfaces.iter().any(|i| i.network == network)
}

pub async fn connect(State(docker): State<super::State>, Path(id): Path<String>, body: Bytes) -> DockerResult<Response> {
    let body: ConnectBody = parse(&body)?;
    let network = find_network(&docker, &id)?;
    let record = find(&docker.core, &body.container)?;
    check_own_namespace(&Front::of(&record))?;
    let endpoint = endpoint_for(&network, &body.endpoint_config.unwrap_or_default())?;
    let exists = || forbidden(format!("endpoint with name {} already exists in network {}", record.spec.name, network.name));
    if connected_to(&docker, &record, &endpoint.name) {
        return Err(exists());
    }
    docker.core.connect_network(NAMESPACE, docker_id(&record), endpoint).await.map_err(|error| match error {
        CoreError::Network(NetworkError::AlreadyExists { what: "endpoint", .. }) => exists(),
        other => core_network_error(other),
    })?;
    docker.publish_network(&network.id, "connect", &network.name, Some(docker_id(&record)));
    Ok(StatusCode::OK.into_response())
}

pub async fn disconnect(State(docker): State<super::State>, Path(id): Path<String>, body: Bytes) -> DockerResult<Response> {
    let body: ConnectBody = parse(&body)?;
    let network = find_network(&docker, &id)?;
    let record = find(&docker.core, &body.container)?;
    check_own_namespace(&Front::of(&record))?;
    let module_name = network.record.as_ref().map(|r| r.name.clone()).unwrap_or_else(|| network.name.clone());
    if !connected_to(&docker, &record, &module_name) {
        if body.force {
            return Ok(StatusCode::OK.into_response());
        }
        return Err(forbidden(format!("container {} is not connected to network {}", docker_id(&record), network.name)));
    }
    docker.core.disconnect_network(NAMESPACE, docker_id(&record), &module_name).await.map_err(core_network_error)?;
    docker.publish_network(&network.id, "disconnect", &network.name, Some(docker_id(&record)));
    Ok(StatusCode::OK.into_response())
}
