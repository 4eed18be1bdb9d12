//! `POST /containers/create`: Docker's container config and host config, checked and
//! translated into a sandbox of its own (network, ports, hostname) and a container in
//! it. A failure leaves nothing behind: the sandbox and its address go with it.
use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::containers::{docker_containers, short};
use super::{DockerError, DockerResult, NAMESPACE};
use crate::core::*;

/// A string or a list of strings (Cmd and Entrypoint take both).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Strings {
    One(String),
    Many(Vec<String>),
}

impl Strings {
    fn into_vec(self) -> Vec<String> {
        match self {
            Strings::One(text) => vec!["/bin/sh".into(), "-c".into(), text],
            Strings::Many(list) => list,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub user: Option<String>,
    pub tty: Option<bool>,
    pub open_stdin: Option<bool>,
    pub stdin_once: Option<bool>,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Strings>,
    pub entrypoint: Option<Strings>,
    pub image: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub working_dir: Option<String>,
    pub exposed_ports: Option<HashMap<String, Value>>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub volumes: Option<HashMap<String, Value>>,
    pub healthcheck: Option<super::health::HealthConfig>,
    pub host_config: Option<HostConfig>,
    pub networking_config: Option<super::network_attach::NetworkingConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub mounts: Option<Vec<super::mounts::MountRequest>>,
    pub restart_policy: Option<super::restart::RestartPolicy>,
    pub network_mode: Option<String>,
    pub links: Option<Vec<String>>,
    pub port_bindings: Option<HashMap<String, Option<Vec<PortBinding>>>>,
    pub auto_remove: Option<bool>,
    pub privileged: Option<bool>,
    pub publish_all_ports: Option<bool>,
    pub readonly_rootfs: Option<bool>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub security_opt: Option<Vec<String>>,
    pub sysctls: Option<BTreeMap<String, String>>,
    pub devices: Option<Vec<DeviceMapping>>,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub tmpfs: Option<BTreeMap<String, String>>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub init: Option<bool>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    pub uts_mode: Option<String>,
    pub extra_hosts: Option<Vec<String>>,
    pub shm_size: Option<i64>,
    pub group_add: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: Option<String>,
    pub host_port: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// What the façade keeps of a container beside the core's record (its `front`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Front {
    pub name: String,
    /// Docker's Config and HostConfig as the client sent them, image defaults merged.
    pub config: Value,
    pub host_config: Value,
    pub ports: Vec<PortMapping>,
    pub network: String,
    pub auto_remove: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub stop_signal: String,
    pub stop_timeout: i64,
    #[serde(default)]
    pub restart_policy: super::restart::RestartPolicy,
    #[serde(default)]
    pub restart_count: i64,
    /// Stopped by `stop` or `kill`, not by itself: the policy leaves it stopped.
    #[serde(default)]
    pub manually_stopped: bool,
    /// The message of the last refused start (`State.Error`), until a start succeeds.
    #[serde(default)]
    pub start_error: Option<String>,
}

impl Front {
    pub fn of(record: &ContainerRecord) -> Front {
        serde_json::from_value(record.spec.front.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct CreateQuery {
    pub name: Option<String>,
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn generated_name(taken: &[String]) -> String {
    const LEFT: [&str; 20] = [
        "brave", "calm", "eager", "happy", "jolly", "keen", "lucid", "merry", "nifty", "quirky", "bold", "clever", "daring", "fond", "gentle", "hardy", "jovial", "kind", "lively", "noble",
    ];
    const RIGHT: [&str; 20] = [
        "turing", "hopper", "lovelace", "curie", "darwin", "euler", "gauss", "noether", "pascal", "tesla", "babbage", "bohr", "dirac", "fermi", "galois", "hilbert", "kepler", "meitner", "newton", "ritchie",
    ];
    let random = ids::new_id().unwrap_or_default();
    let seed = usize::from_str_radix(&random[..random.len().min(12)], 16).unwrap_or_else(|_| now_nanos().unsigned_abs() as usize);
    for attempt in 0..200 {
        let pick = seed + attempt * 13;
        let name = format!("{}_{}{}", LEFT[pick % 20], RIGHT[(pick / 20) % 20], (pick / 400) % 100);
        if !taken.contains(&name) {
            return name;
        }
    }
    format!("berth_{seed:x}")
}

/// Docker's short image name: `docker.io/library/busybox:latest` is `busybox:latest`.
pub fn familiar(name: &str) -> String {
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    name.strip_prefix("library/").unwrap_or(name).to_string()
}

/// `busybox` is `busybox:latest`, as dockerd names it in errors.
pub fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// A free port in berthd's network namespace, for `-P` and `-p 80` (no host port).
fn ephemeral_port(protocol: &str) -> DockerResult<u16> {
    let port = if protocol == "udp" {
        std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind("0.0.0.0:0").and_then(|s| s.local_addr())
    };
    port.map(|a| a.port()).map_err(|e| DockerError::internal(format!("finding a free host port: {e}")))
}

fn split_port(key: &str) -> DockerResult<(u16, String)> {
    let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
    let port = port.parse::<u16>().map_err(|_| DockerError::bad_request(format!("invalid port specification: {key:?}")))?;
    if !matches!(protocol, "tcp" | "udp") {
        return Err(DockerError::bad_request(format!("invalid proto: {protocol}")));
    }
    Ok((port, protocol.to_string()))
}

fn port_mappings(body: &CreateBody, host: &HostConfig) -> DockerResult<Vec<PortMapping>> {
    let mut mappings = Vec::new();
    for (key, bindings) in host.port_bindings.clone().unwrap_or_default() {
        let (container_port, protocol) = split_port(&key)?;
        for binding in bindings.unwrap_or_default() {
            let host_port = match binding.host_port.as_deref().unwrap_or("") {
                "" => ephemeral_port(&protocol)?,
                text => text.parse().map_err(|_| DockerError::bad_request(format!("invalid port specification: {text:?}")))?,
            };
            let host_ip = binding.host_ip.unwrap_or_default();
            mappings.push(PortMapping { protocol: protocol.clone(), container_port, host_port, host_ip });
        }
    }
    if host.publish_all_ports.unwrap_or(false) {
        for key in body.exposed_ports.clone().unwrap_or_default().keys() {
            let (container_port, protocol) = split_port(key)?;
            if !mappings.iter().any(|m| m.container_port == container_port && m.protocol == protocol) {
                let host_port = ephemeral_port(&protocol)?;
                mappings.push(PortMapping { protocol, container_port, host_port, host_ip: String::new() });
            }
        }
    }
    Ok(mappings)
}

/// What dockerd refuses beside `--network container:NAME`.
fn check_joined_network(network: &super::network_attach::NetworkPlan, body: &CreateBody, host: &HostConfig) -> DockerResult<()> {
    if network.network_of.is_none() {
        return Ok(());
    }
    if body.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
        return Err(DockerError::bad_request("conflicting options: hostname and the network mode"));
    }
    if host.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || host.publish_all_ports == Some(true) {
        return Err(DockerError::bad_request("conflicting options: port publishing and the container type network mode"));
    }
    Ok(())
}

pub fn resources_of(host: &HostConfig) -> Resources {
    let mut resources = Resources {
        memory_limit_bytes: host.memory.unwrap_or(0),
        memory_swap_limit_bytes: host.memory_swap.unwrap_or(0),
        cpu_shares: host.cpu_shares.unwrap_or(0),
        cpu_period: host.cpu_period.unwrap_or(0),
        cpu_quota: host.cpu_quota.unwrap_or(0),
        cpuset_cpus: host.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: host.cpuset_mems.clone().unwrap_or_default(),
        ..Resources::default()
    };
    if let Some(nano) = host.nano_cpus.filter(|n| *n > 0) {
        resources.cpu_period = 100_000;
        resources.cpu_quota = nano / 10_000;
    }
    if let Some(pids) = host.pids_limit.filter(|p| *p > 0) {
        resources.pids_limit = pids;
    }
    resources
}

fn security(host: &HostConfig, user: &str) -> DockerResult<SecuritySettings> {
    let mut security = SecuritySettings {
        privileged: host.privileged.unwrap_or(false),
        add_capabilities: host.cap_add.clone().unwrap_or_default(),
        drop_capabilities: host.cap_drop.clone().unwrap_or_default(),
        readonly_rootfs: host.readonly_rootfs.unwrap_or(false),
        seccomp: SeccompProfile::RuntimeDefault,
        pid: NamespaceMode::Container,
        ..SecuritySettings::default()
    };
    for option in host.security_opt.clone().unwrap_or_default() {
        match option.replace('=', ":").as_str() {
            "seccomp:unconfined" => security.seccomp = SeccompProfile::Unconfined,
            "no-new-privileges" | "no-new-privileges:true" => security.no_new_privs = true,
            "no-new-privileges:false" => security.no_new_privs = false,
            "apparmor:unconfined" => security.apparmor = String::new(),
            // As dockerd: applied where the kernel runs AppArmor (the spec leaves it out elsewhere).
            other if other.starts_with("apparmor:") => security.apparmor = other["apparmor:".len()..].into(),
            other if other.starts_with("label:") => {}
            other if other.starts_with("seccomp:") => security.seccomp = SeccompProfile::Localhost(other["seccomp:".len()..].into()),
            _ => return Err(DockerError::bad_request(format!("Invalid --security-opt: {option:?}"))),
        }
    }
    let (name, group) = user.split_once(':').unwrap_or((user, ""));
    match name.parse::<i64>() {
        Ok(uid) => security.run_as_user = Some(uid),
        Err(_) => security.run_as_username = name.to_string(),
    }
    if let Ok(gid) = group.parse::<i64>() {
        security.run_as_group = Some(gid);
    }
    Ok(security)
}

/// The body parsed twice: as JSON (malformed is a 400) and as typed fields (a field of
/// the wrong type is a 400 naming it).
fn parse_body(bytes: &[u8]) -> DockerResult<(Value, CreateBody)> {
    let raw: Value = serde_json::from_slice(bytes).map_err(|e| DockerError::bad_request(format!("invalid JSON: {e}")))?;
    let body: CreateBody = serde_json::from_value(raw.clone()).map_err(|e| DockerError::bad_request(format!("invalid container config: {e}")))?;
    Ok((raw, body))
}

/// Config with the image's defaults filled in, as `docker inspect` shows it.
fn effective_config(mut raw: Value, image: &crate::image::Image, hostname: &str) -> Value {
    let image_config = &image.config;
    let object = match raw.as_object_mut() {
        Some(object) => object,
        None => return raw,
    };
    object.remove("HostConfig");
    object.remove("NetworkingConfig");
    let empty = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_array().is_some_and(|a| a.is_empty()) || v.as_str() == Some(""));
    if empty(object.get("Cmd")) && empty(object.get("Entrypoint")) {
        object.insert("Cmd".into(), serde_json::json!(image_config.cmd.clone().unwrap_or_default()));
    }
    if empty(object.get("Entrypoint")) {
        object.insert("Entrypoint".into(), serde_json::json!(image_config.entrypoint.clone()));
    }
    let mut env: Vec<String> = image_config.env.clone().unwrap_or_default();
    env.extend(object.get("Env").and_then(|e| e.as_array()).into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)));
    object.insert("Env".into(), serde_json::json!(env));
    if empty(object.get("WorkingDir")) {
        object.insert("WorkingDir".into(), serde_json::json!(image_config.working_dir.clone().unwrap_or_default()));
    }
    if empty(object.get("Hostname")) {
        object.insert("Hostname".into(), serde_json::json!(hostname));
    }
    let health = |v: Option<&Value>| v.and_then(|v| serde_json::from_value(v.clone()).ok());
    if let Some(merged) = super::health::HealthConfig::merged(health(object.get("Healthcheck")), health(image_config.healthcheck.as_ref())) {
        object.insert("Healthcheck".into(), serde_json::json!(merged));
    }
    raw
}

pub fn conflict_message(name: &str, id: &str) -> String {
    format!("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")
}

pub async fn create(State(docker): State<super::State>, Query(query): Query<CreateQuery>, bytes: Bytes) -> DockerResult<(StatusCode, Json<Value>)> {
    let core = &docker.core;
    let (raw, body) = parse_body(&bytes)?;
    let image_name = body.image.clone().unwrap_or_default();
    if image_name.is_empty() {
        return Err(DockerError::bad_request("config cannot be empty in order to create a container"));
    }
    if let Some(check) = &body.healthcheck {
        check.validate()?;
    }
    let image = core.images.get(&image_name).map_err(|_| DockerError::no_such_image(&with_tag(&image_name)))?;
    let existing = docker_containers(core)?;
    let name = match query.name.as_deref().map(|n| n.trim_start_matches('/')) {
        Some(name) if !name.is_empty() => {
            if !valid_name(name) {
                return Err(DockerError::bad_request(format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
            }
            name.to_string()
        }
        _ => generated_name(&existing.iter().map(|c| c.spec.name.clone()).collect::<Vec<_>>()),
    };
    if let Some(owner) = existing.iter().find(|c| c.spec.name == name) {
        return Err(DockerError::conflict(conflict_message(&name, &owner.spec.sandbox_id)));
    }
    let host = body.host_config.clone().unwrap_or_default();
    let network = super::network_attach::plan(&docker, host.network_mode.as_deref().unwrap_or_default(), &body.networking_config.clone().unwrap_or_default())?;
    let own_ports = network.namespace != NamespaceMode::Node && network.networks.as_ref().is_none_or(|n| !n.is_empty());
    let ports = if own_ports { port_mappings(&body, &host)? } else { Vec::new() };
    check_joined_network(&network, &body, &host)?;
    let links = super::links::resolve(&docker, host.links.as_deref().unwrap_or_default(), &network.mode)?;
    let mount_plan = plan_mounts(&body, &host, &image)?;
    mount_plan.make_missing_bind_sources(host.binds.as_deref().unwrap_or_default())?;
    let restart_policy = host.restart_policy.clone().unwrap_or_default();
    super::restart::validate(&restart_policy, host.auto_remove.unwrap_or(false))?;
    let user = body.user.clone().unwrap_or_default();
    let modes = super::host_options::namespace_modes(&host)?;
    let mut security = security(&host, &user)?;
    security.pid = modes.pid;
    security.supplemental_group_names = host.group_add.clone().unwrap_or_default();
    let gateway = || super::networks::find_network(&docker, "bridge").ok().and_then(|n| n.record).map(|r| std::net::IpAddr::V4(r.gateway));
    let extra_hosts = super::host_options::extra_hosts(&host, gateway)?;
    let tty = body.tty.unwrap_or(false);
    let extras = super::extras::extras_of(&host, &mount_plan.tmpfs)?;
    let sandbox_spec = SandboxSpec {
        name: name.clone(),
        hostname: body.hostname.clone().unwrap_or_default(),
        labels: body.labels.clone().unwrap_or_default(),
        port_mappings: ports.clone(),
        network: network.namespace,
        networks: network.networks.clone(),
        network_of: network.network_of.clone(),
        links: super::links::link_aliases(&links),
        ipc: modes.ipc,
        shm_bytes: super::host_options::shm_bytes(&host)?,
        pid: modes.pid,
        sysctls: host.sysctls.clone().unwrap_or_default().into_iter().collect(),
        privileged: security.privileged,
        dns: super::host_options::dns_settings(&host, extra_hosts),
        ..SandboxSpec::default()
    };
    let sandbox_id = create_sandbox(core, sandbox_spec, network.hostname.clone().or(body.hostname.clone())).await.map_err(|e| match e {
        CoreError::AlreadyExists(_) => DockerError::conflict(conflict_message(&name, "")),
        other => super::networks::core_network_error(other),
    })?;
    crate::crash_point!("docker.create.after_sandbox");
    let volume_guard = docker.volume_lock.lock().await;
    let new_volumes = match super::volumes::provide(&docker, &mount_plan.volumes) {
        Ok(made) => made,
        Err(error) => {
            super::containers::discard_sandbox(&docker, &sandbox_id).await;
            return Err(error);
        }
    };
    let mut mounts = mount_plan.binds.clone();
    mounts.extend(super::volumes::mount_specs(&docker, &mount_plan.volumes));
    let hostname = core.sandbox(NAMESPACE, &sandbox_id).map(|s| s.spec.hostname).unwrap_or_default();
    let mut host_config = raw.get("HostConfig").cloned().unwrap_or(Value::Null);
    if !links.is_empty() {
        host_config["Links"] = serde_json::json!(super::links::stored(&links));
    }
    let mut env: Vec<(String, String)> = super::links::environment(&docker, &name, &links, &network.mode);
    env.extend(body.env.clone().unwrap_or_default().iter().map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((e.clone(), String::new()))));
    let front = Front {
        name: name.clone(),
        config: effective_config(raw.clone(), &image, &hostname),
        host_config,
        ports,
        network: network.mode.clone(),
        auto_remove: host.auto_remove.unwrap_or(false),
        open_stdin: body.open_stdin.unwrap_or(false),
        stdin_once: body.stdin_once.unwrap_or(false),
        stop_signal: body.stop_signal.clone().unwrap_or_default(),
        stop_timeout: body.stop_timeout.unwrap_or(10),
        restart_policy,
        restart_count: 0,
        manually_stopped: false,
        start_error: None,
    };
    let log_path = super::logs::log_path(&core.paths.root, &sandbox_id);
    let spec = ContainerSpec {
        name: name.clone(),
        sandbox_id: sandbox_id.clone(),
        image: image_name.clone(),
        command: body.entrypoint.clone().map(Strings::into_vec).unwrap_or_default(),
        args: body.cmd.clone().map(Strings::into_vec).unwrap_or_default(),
        env,
        working_dir: body.working_dir.clone().unwrap_or_default(),
        mounts,
        devices: host.devices.clone().unwrap_or_default().into_iter().map(|d| DeviceSpec { container_path: if d.path_in_container.is_empty() { d.path_on_host.clone() } else { d.path_in_container }, host_path: d.path_on_host, permissions: if d.cgroup_permissions.is_empty() { "rwm".into() } else { d.cgroup_permissions } }).collect(),
        resources: resources_of(&host),
        security,
        log_path: if tty { String::new() } else { log_path.display().to_string() },
        tty,
        stdin: front.open_stdin,
        stdin_once: front.stdin_once,
        labels: body.labels.clone().unwrap_or_default(),
        annotations: Labels::new(),
        front: serde_json::to_value(&front).map_err(|e| DockerError::internal(e.to_string()))?,
        extras,
    };
    if let Err(error) = super::logs::open_log(&log_path) {
        super::containers::discard_sandbox(&docker, &sandbox_id).await;
        super::volumes::discard_new(&docker, &new_volumes);
        return Err(DockerError::internal(format!("creating the container's log: {error}")));
    }
    let container_id = match core.create_container(NAMESPACE, spec).await {
        Ok(id) => id,
        Err(error) => {
            super::containers::discard_sandbox(&docker, &sandbox_id).await;
            super::volumes::discard_new(&docker, &new_volumes);
            return Err(match error {
                CoreError::InvalidArgument(message) => DockerError::bad_request(message),
                other => other.into(),
            });
        }
    };
    drop(volume_guard);
    let filled = match core.container(NAMESPACE, &container_id) {
        Ok(record) => super::volumes::fill_new(&docker, core, &record, &mount_plan.volumes, &new_volumes).await,
        Err(error) => Err(error.into()),
    };
    if let Err(error) = filled {
        super::containers::discard_sandbox(&docker, &sandbox_id).await;
        super::volumes::discard_new(&docker, &new_volumes);
        return Err(error);
    }
    for name in &new_volumes {
        docker.publish_volume(name, "create", None);
    }
    docker.publish_container(&sandbox_id, "create", &name, &image_name);
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "Id": sandbox_id, "Warnings": [] }))))
}

/// The binds, `--mount`s and anonymous volumes (the request's and the image's
/// `Volumes`).
fn plan_mounts(body: &CreateBody, host: &HostConfig, image: &crate::image::Image) -> DockerResult<super::mounts::MountPlan> {
    let mut anonymous: Vec<String> = body.volumes.iter().flat_map(|v| v.keys().cloned()).collect();
    anonymous.extend(image.config.volumes.iter().flat_map(|v| v.keys().cloned()));
    super::mounts::plan(host.binds.as_deref().unwrap_or_default(), host.mounts.as_deref().unwrap_or_default(), &anonymous)
}

/// Runs the sandbox, unplugged until its container starts; its hostname is the client's, else the first 12 digits of its id.
async fn create_sandbox(core: &Core, spec: SandboxSpec, hostname: Option<String>) -> CoreResult<String> {
    let id = ids::new_id()?;
    let hostname = hostname.filter(|h| !h.is_empty()).unwrap_or_else(|| short(&id).to_string());
    core.run_sandbox_unplugged(NAMESPACE, id, SandboxSpec { hostname, ..spec }).await
}
