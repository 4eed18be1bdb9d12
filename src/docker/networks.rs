//! `/networks`: list with filters, inspect (with the attached containers), create,
//! remove and prune Docker's networks over the network module's bridge networks. The
//! default network is Docker's `bridge`; `host` and `none` are listed beside it as the
//! builtin networks dockerd shows. Connect and disconnect live in `network_attach`.
use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

use super::containers::{docker_containers, label_matches, no_content, parse_filters, truthy};
use super::error::{DockerError, DockerResult};
use crate::core::{CoreError, SandboxRecord};
use crate::network::{CreateNetwork, NetworkError, NetworkRecord};

pub fn routes() -> Router<super::State> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(super::network_attach::connect))
        .route("/networks/{id}/disconnect", post(super::network_attach::disconnect))
}

/// A network as the façade shows it: one of the network module's, or `host`/`none`.
#[derive(Debug, Clone)]
pub struct DockerNetwork {
    pub name: String,
    pub id: String,
    pub driver: &'static str,
    pub record: Option<NetworkRecord>,
}

impl DockerNetwork {
    pub fn builtin(&self) -> bool {
        self.record.as_ref().is_none_or(|r| !r.user_defined)
    }
}

/// A stable 64-digit id for a network the module names but does not number.
fn derived_id(name: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("berth-network/{name}").as_bytes()))
}

/// The id of `network`'s endpoint for `sandbox_id` (stable, as Docker's are per connect).
pub fn endpoint_id(sandbox_id: &str, network: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("berth-endpoint/{sandbox_id}/{network}").as_bytes()))
}

fn from_record(record: NetworkRecord) -> DockerNetwork {
    let id = if record.user_defined { record.id.clone() } else { derived_id(&record.name) };
    let name = if record.user_defined { record.name.clone() } else { "bridge".into() };
    DockerNetwork { name, id, driver: "bridge", record: Some(record) }
}

/// Every network: the module's (the default one shown as `bridge`), then host and none.
pub fn all_networks(docker: &super::Docker) -> DockerResult<Vec<DockerNetwork>> {
    let records = docker.core.network.network_records().map_err(network_error)?;
    let mut networks: Vec<DockerNetwork> = records.into_iter().map(from_record).collect();
    for (name, driver) in [("host", "host"), ("none", "null")] {
        networks.push(DockerNetwork { name: name.into(), id: derived_id(name), driver, record: None });
    }
    Ok(networks)
}

/// A network by name, full id or unique id prefix, as dockerd looks them up.
pub fn find_network(docker: &super::Docker, wanted: &str) -> DockerResult<DockerNetwork> {
    let wanted = if wanted == docker.core.network.config().default_network { "bridge" } else { wanted };
    let networks = all_networks(docker)?;
    if let Some(found) = networks.iter().find(|n| n.name == wanted || n.id == wanted) {
        return Ok(found.clone());
    }
    let mut prefixed = networks.into_iter().filter(|n| !wanted.is_empty() && n.id.starts_with(wanted));
    match (prefixed.next(), prefixed.next()) {
        (Some(found), None) => Ok(found),
        (Some(_), Some(_)) => Err(DockerError::bad_request(format!("network {wanted} is ambiguous"))),
        _ => Err(DockerError::not_found(format!("network {wanted} not found"))),
    }
}

/// The network module's errors in dockerd's words and statuses.
pub fn network_error(error: NetworkError) -> DockerError {
    match error {
        NetworkError::NotFound { what: "network", name } => DockerError::not_found(format!("network {name} not found")),
        NetworkError::AlreadyExists { what: "network", name } => DockerError::conflict(format!("network with name {name} already exists")),
        NetworkError::SubnetOverlap(_) => DockerError::new(StatusCode::FORBIDDEN, "invalid pool request: Pool overlaps with other one on this address space"),
        NetworkError::InUse { network, id, .. } => {
            DockerError::new(StatusCode::FORBIDDEN, format!("error while removing network: network {network} id {id} has active endpoints"))
        }
        NetworkError::AddressInUse(_) => DockerError::new(StatusCode::FORBIDDEN, "Address already in use"),
        NetworkError::SubnetFull { .. } => DockerError::new(StatusCode::FORBIDDEN, "no available IPv4 addresses on this network's address pools"),
        NetworkError::InvalidArgument(message) => DockerError::bad_request(message),
        other => DockerError::internal(other.to_string()),
    }
}

/// A core error, with the network module's inside it mapped as [`network_error`] does.
pub fn core_network_error(error: CoreError) -> DockerError {
    match error {
        CoreError::Network(inner) => network_error(inner),
        other => other.into(),
    }
}

/// The Docker containers on each network: network name -> (container id, interface).
fn attached(docker: &super::Docker) -> DockerResult<HashMap<String, Vec<(String, String, Value)>>> {
    let mut by_network: HashMap<String, Vec<(String, String, Value)>> = HashMap::new();
    let sandboxes: HashMap<String, SandboxRecord> = docker.core.list_sandboxes(super::NAMESPACE)?.into_iter().map(|s| (s.id.clone(), s)).collect();
    // Only running containers hold endpoints (see `endpoint_release`).
    for record in docker_containers(&docker.core)?.into_iter().filter(|r| r.state == crate::core::ContainerState::Running) {
        let id = record.spec.sandbox_id.clone();
        for (network, endpoint) in super::network_attach::endpoints_of(docker, &record, sandboxes.get(&id)) {
            let entry = json!({
                "Name": record.spec.name,
                "EndpointID": endpoint["EndpointID"],
                "MacAddress": endpoint["MacAddress"],
                "IPv4Address": match endpoint["IPAddress"].as_str() {
                    Some(ip) if !ip.is_empty() => format!("{ip}/{}", endpoint["IPPrefixLen"]),
                    _ => String::new(),
                },
                "IPv6Address": "",
            });
            by_network.entry(network).or_default().push((id.clone(), record.spec.name.clone(), entry));
        }
    }
    Ok(by_network)
}

fn created_text(record: Option<&NetworkRecord>) -> String {
    match record.map(|r| r.created_nanos).filter(|n| *n > 0) {
        Some(nanos) => super::logs::format_time(nanos),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

fn ipam_json(record: Option<&NetworkRecord>) -> Value {
    let config: Vec<Value> = record
        .map(|r| {
            let mut entry = json!({"Subnet": r.subnet.to_string(), "Gateway": r.gateway.to_string()});
            if let Some(range) = r.ip_range {
                entry["IPRange"] = json!(range.to_string());
            }
            vec![entry]
        })
        .unwrap_or_default();
    json!({"Driver": "default", "Options": null, "Config": config})
}

pub fn network_json(network: &DockerNetwork, containers: Option<&Vec<(String, String, Value)>>) -> Value {
    let record = network.record.as_ref();
    let mut options = serde_json::Map::new();
    if let Some(record) = record {
        options.insert("com.docker.network.bridge.name".into(), json!(record.bridge));
        options.insert("com.docker.network.driver.mtu".into(), json!(record.mtu.to_string()));
    }
    let containers: serde_json::Map<String, Value> = containers.into_iter().flatten().map(|(id, _, entry)| (id.clone(), entry.clone())).collect();
    json!({
        "Name": network.name, "Id": network.id, "Created": created_text(record), "Scope": "local", "Driver": network.driver,
        "EnableIPv4": network.record.is_some(), "EnableIPv6": false, "IPAM": ipam_json(record),
        "Internal": record.is_some_and(|r| r.internal), "Attachable": record.is_some_and(|r| r.attachable), "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false, "Containers": containers, "Options": options,
        "Labels": record.map(|r| r.labels.clone()).unwrap_or_default(),
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct FilterQuery {
    filters: Option<String>,
}

fn passes(network: &DockerNetwork, in_use: bool, filters: &HashMap<String, Vec<String>>) -> DockerResult<bool> {
    let labels = network.record.as_ref().map(|r| r.labels.clone()).unwrap_or_default();
    for (key, values) in filters {
        let matched = match key.as_str() {
            "name" => values.iter().any(|v| network.name.contains(v.as_str())),
            "id" => values.iter().any(|v| network.id.starts_with(v.as_str())),
            "label" => values.iter().all(|v| label_matches(&labels, v)),
            "driver" => values.iter().any(|v| v == network.driver),
            "scope" => values.iter().any(|v| v == "local"),
            "type" => values.iter().any(|v| match v.as_str() {
                "custom" => !network.builtin(),
                "builtin" => network.builtin(),
                _ => false,
            }),
            "dangling" => values.iter().any(|v| truthy(Some(v)) == (!in_use && !network.builtin())),
            "until" => true,
            other => return Err(DockerError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check_filter_values(filters: &HashMap<String, Vec<String>>) -> DockerResult<()> {
    for value in filters.get("type").into_iter().flatten() {
        if value != "custom" && value != "builtin" {
            return Err(DockerError::bad_request(format!("invalid filter: 'type'='{value}'")));
        }
    }
    Ok(())
}

async fn list(State(docker): State<super::State>, Query(query): Query<FilterQuery>) -> DockerResult<Json<Value>> {
    let filters = parse_filters(query.filters.as_deref())?;
    check_filter_values(&filters)?;
    let attached = attached(&docker)?;
    let mut shown = Vec::new();
    for network in all_networks(&docker)? {
        let containers = attached.get(&network.name);
        if passes(&network, containers.is_some_and(|c| !c.is_empty()), &filters)? {
            let mut entry = network_json(&network, None);
            entry["Containers"] = json!({});
            shown.push(entry);
        }
    }
    Ok(Json(Value::Array(shown)))
}

async fn inspect(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Json<Value>> {
    let network = find_network(&docker, &id)?;
    let attached = attached(&docker)?;
    Ok(Json(network_json(&network, attached.get(&network.name))))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct IpamConfig {
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    gateway: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct CreateBody {
    name: String,
    driver: Option<String>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    internal: Option<bool>,
    attachable: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    labels: Option<BTreeMap<String, String>>,
}

/// What dockerd refuses before anything is made: other drivers, IPv6, several pools.
fn check_create(body: &CreateBody) -> DockerResult<()> {
    if body.name.is_empty() {
        return Err(DockerError::bad_request("invalid name: name is empty"));
    }
    match body.driver.as_deref().unwrap_or_default() {
        "" | "bridge" => {}
        builtin @ ("host" | "null") => return Err(DockerError::new(StatusCode::FORBIDDEN, format!("only one instance of \"{builtin}\" network is allowed"))),
        other => return Err(DockerError::not_found(format!("plugin \"{other}\" not found"))),
    }
    if body.enable_ipv6 == Some(true) {
        return Err(DockerError::bad_request("IPv6 is not supported by berth's bridge networks: create the network without --ipv6"));
    }
    let ipam = body.ipam.as_ref();
    if let Some(driver) = ipam.and_then(|i| i.driver.as_deref()).filter(|d| !d.is_empty() && *d != "default") {
        return Err(DockerError::not_found(format!("plugin \"{driver}\" not found")));
    }
    let pools = ipam.and_then(|i| i.config.as_ref()).map(Vec::len).unwrap_or(0);
    if pools > 1 {
        return Err(DockerError::bad_request("berth's bridge networks take one IPv4 subnet"));
    }
    Ok(())
}

fn create_request(body: CreateBody) -> CreateNetwork {
    let pool = body.ipam.and_then(|i| i.config).and_then(|c| c.into_iter().next()).unwrap_or_default();
    let text = |t: Option<String>| t.filter(|t| !t.is_empty());
    CreateNetwork {
        name: body.name,
        subnet: text(pool.subnet),
        gateway: text(pool.gateway),
        ip_range: text(pool.ip_range),
        internal: body.internal.unwrap_or(false),
        attachable: body.attachable.unwrap_or(false),
        labels: body.labels.unwrap_or_default(),
    }
}

async fn create(State(docker): State<super::State>, body: Bytes) -> DockerResult<(StatusCode, Json<Value>)> {
    let body: CreateBody = serde_json::from_slice(&body).map_err(|e| DockerError::bad_request(format!("invalid JSON: {e}")))?;
    check_create(&body)?;
    if find_network(&docker, &body.name).is_ok_and(|n| n.name == body.name) {
        return Err(DockerError::conflict(format!("network with name {} already exists", body.name)));
    }
    let record = docker.core.network.create_network(&create_request(body)).await.map_err(network_error)?;
    docker.publish_network(&record.id, "create", &record.name, None);
    Ok((StatusCode::CREATED, Json(json!({"Id": record.id, "Warning": ""}))))
}

async fn remove(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Response> {
    let network = find_network(&docker, &id)?;
    if network.builtin() {
        return Err(DockerError::new(StatusCode::FORBIDDEN, format!("{} is a pre-defined network and cannot be removed", network.name)));
    }
    super::endpoint_release::release_stopped(&docker).await;
    docker.core.network.remove_network(&network.name).await.map_err(network_error)?;
    docker.publish_network(&network.id, "destroy", &network.name, None);
    Ok(no_content())
}

/// `until`: a timestamp (RFC 3339 or seconds) or a duration before now ("24h", "90m").
fn until_nanos(text: &str) -> DockerResult<i64> {
    if let Some(nanos) = super::logs::parse_time(text) {
        return Ok(nanos);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1e9) as i64);
    }
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
    let scale = match unit {
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(DockerError::bad_request(format!("invalid filter 'until={text}'"))),
    };
    let amount: f64 = number.parse().map_err(|_| DockerError::bad_request(format!("invalid filter 'until={text}'")))?;
    Ok(crate::core::now_nanos() - (amount * scale) as i64)
}

async fn prune(State(docker): State<super::State>, Query(query): Query<FilterQuery>) -> DockerResult<Json<Value>> {
    let filters = parse_filters(query.filters.as_deref())?;
    let until = filters.get("until").and_then(|v| v.first()).map(|t| until_nanos(t)).transpose()?;
    super::endpoint_release::release_stopped(&docker).await;
    let attached = attached(&docker)?;
    let mut deleted = Vec::new();
    for network in all_networks(&docker)?.into_iter().filter(|n| !n.builtin()) {
        let created = network.record.as_ref().map(|r| r.created_nanos).unwrap_or(0);
        let unused = attached.get(&network.name).is_none_or(|c| c.is_empty());
        if unused && until.is_none_or(|u| created <= u) && passes(&network, false, &filters)? {
            match docker.core.network.remove_network(&network.name).await {
                Ok(()) => {
                    docker.publish_network(&network.id, "destroy", &network.name, None);
                    deleted.push(network.name);
                }
                Err(error) => tracing::warn!(network = %network.name, %error, "prune: the network stays"),
            }
        }
    }
    Ok(Json(json!({"NetworksDeleted": deleted})))
}

impl super::Docker {
    pub fn publish_network(&self, id: &str, action: &str, name: &str, container: Option<&str>) {
        let mut attributes = json!({"name": name, "type": "bridge"});
        if let Some(container) = container {
            attributes["container"] = json!(container);
        }
        self.publish("network", action, id, attributes, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_durations_and_timestamps() {
        let now = crate::core::now_nanos();
        let an_hour_ago = until_nanos("1h").unwrap();
        assert!((now - an_hour_ago - 3_600_000_000_000).abs() < 1_000_000_000);
        assert_eq!(until_nanos("10").unwrap(), 10_000_000_000);
        assert!(until_nanos("2020-01-01T00:00:00Z").unwrap() > 0);
        assert!(until_nanos("soon").is_err());
    }

    #[test]
    fn other_drivers_and_ipv6_are_refused() {
        let body = |json: &str| serde_json::from_str::<CreateBody>(json).unwrap();
        assert_eq!(check_create(&body(r#"{"Name":"n","Driver":"overlay"}"#)).unwrap_err().status, StatusCode::NOT_FOUND);
        assert_eq!(check_create(&body(r#"{"Name":"n","EnableIPv6":true}"#)).unwrap_err().status, StatusCode::BAD_REQUEST);
        assert!(check_create(&body(r#"{"Name":"n","Driver":"bridge","IPAM":{"Config":[{"Subnet":"10.9.0.0/24"}]}}"#)).is_ok());
        // docker-py sends nulls for what it leaves unset.
        let nulls = body(r#"{"Name":"n","Driver":null,"Options":null,"IPAM":{"Driver":"default","Config":[{"Subnet":null,"IPRange":null,"Gateway":null}]},"Internal":null}"#);
        assert!(check_create(&nulls).is_ok());
        assert_eq!(create_request(nulls).subnet, None);
    }
}
