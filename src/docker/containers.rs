//! Container routes: list, inspect, the life cycle (start, stop, kill, restart,
//! pause, wait, remove, prune), top, resize and update; and the watcher that turns
//! the core's exits into Docker events and auto-removals.
use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::create::{familiar, Front};
use super::{DockerError, DockerResult, NAMESPACE};
use crate::core::events::LifecycleEvent;
use crate::core::*;

pub fn routes() -> Router<super::State> {
    Router::new()
        .route("/containers/json", get(list))
        .route("/containers/create", post(super::create::create))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/logs", get(super::attach::logs))
        .route("/containers/{id}/attach", post(super::attach::attach))
        .route("/containers/{id}/stats", get(super::attach::stats))
        .route("/containers/{id}", delete(remove))
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

pub fn docker_containers(core: &Core) -> DockerResult<Vec<ContainerRecord>> {
    Ok(core.list_containers(NAMESPACE)?)
}

/// A container by name, Docker id (its sandbox's) or unique id prefix.
pub fn find(core: &Core, wanted: &str) -> DockerResult<ContainerRecord> {
    let name = wanted.trim_start_matches('/');
    let all = docker_containers(core)?;
    if let Some(found) = all.iter().find(|c| c.spec.sandbox_id == wanted || c.spec.name == name) {
        return Ok(found.clone());
    }
    let mut prefixed = all.into_iter().filter(|c| !wanted.is_empty() && c.spec.sandbox_id.starts_with(wanted));
    match (prefixed.next(), prefixed.next()) {
        (Some(found), None) => Ok(found),
        (Some(_), Some(_)) => Err(DockerError::bad_request(format!("multiple IDs found with provided prefix: {wanted}"))),
        _ => Err(DockerError::no_such_container(wanted)),
    }
}

/// The id Docker clients know a record by.
pub fn docker_id(record: &ContainerRecord) -> &str {
    &record.spec.sandbox_id
}

/// Removes a container's sandbox, container, log and stdio.
pub async fn discard_sandbox(docker: &super::Docker, sandbox_id: &str) {
    if let Err(error) = docker.core.remove_sandbox(NAMESPACE, sandbox_id).await {
        tracing::warn!(sandbox = %sandbox_id, %error, "removing a docker container's sandbox");
    }
    crate::crash_point!("docker.remove.after_sandbox");
    let _ = std::fs::remove_dir_all(docker.core.paths.root.join("docker").join(sandbox_id));
    let _ = std::fs::remove_dir_all(docker.core.paths.state.join("docker").join(sandbox_id));
    if let Ok(mut consoles) = docker.consoles.lock() {
        consoles.remove(sandbox_id);
    }
    if let Ok(mut paused) = docker.paused.lock() {
        paused.remove(sandbox_id);
    }
    docker.health.forget(sandbox_id);
    if let Ok(mut execs) = docker.execs.lock() {
        execs.retain(|_, exec| exec.docker_container_id != sandbox_id);
    }
}

fn seconds(nanos: i64) -> i64 {
    nanos / 1_000_000_000
}

/// Docker's human durations ("Up 5 seconds", "Exited (0) 2 minutes ago").
pub fn human_duration(nanos: i64) -> String {
    let secs = seconds(nanos.max(0));
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 14 * 86400 => format!("{} days", s / 86400),
        s if s < 60 * 86400 => format!("{} weeks", s / (7 * 86400)),
        s if s < 730 * 86400 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

impl super::Docker {
    pub fn is_paused(&self, id: &str) -> bool {
        self.paused.lock().map(|p| p.contains(id)).unwrap_or(false)
    }

    /// Docker's state word: created, running, paused, exited.
    pub fn state_word(&self, record: &ContainerRecord) -> &'static str {
        match record.state {
            ContainerState::Created => "created",
            ContainerState::Running if self.is_paused(docker_id(record)) => "paused",
            ContainerState::Running => "running",
            ContainerState::Exited if super::restart::is_restarting(record) => "restarting",
            ContainerState::Exited | ContainerState::Unknown => "exited",
        }
    }

    fn status_text(&self, record: &ContainerRecord) -> String {
        let now = now_nanos();
        match record.state {
            ContainerState::Created => "Created".into(),
            ContainerState::Running if self.is_paused(docker_id(record)) => format!("Up {} (Paused)", human_duration(now - record.started_at)),
            ContainerState::Running => format!("Up {}{}", human_duration(now - record.started_at), super::health::status_suffix(self, record)),
            ContainerState::Exited if super::restart::is_restarting(record) => format!("Restarting ({}) {} ago", record.exit_code, human_duration(now - record.finished_at)),
            _ => format!("Exited ({}) {} ago", record.exit_code, human_duration(now - record.finished_at)),
        }
    }
}

fn command_line(front: &Front) -> String {
    let words = |key: &str| front.config.get(key).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let mut line: Vec<String> = words("Entrypoint").iter().chain(words("Cmd").iter()).filter_map(|v| v.as_str().map(str::to_string)).collect();
    if line.is_empty() {
        line.push(String::new());
    }
    line.join(" ")
}

fn ports_json(front: &Front) -> Vec<Value> {
    front
        .ports
        .iter()
        .map(|p| json!({"IP": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip }, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol}))
        .collect()
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    all: Option<String>,
    filters: Option<String>,
    size: Option<String>,
    limit: Option<i64>,
}

pub fn truthy(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true" | "True" | "yes"))
}

/// Docker's filters: `{"key": ["v", ...]}` or the old `{"key": {"v": true}}`.
pub fn parse_filters(text: Option<&str>) -> DockerResult<HashMap<String, Vec<String>>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(HashMap::new()) };
    let value: Value = serde_json::from_str(text).map_err(|e| DockerError::bad_request(format!("invalid filter: {e}")))?;
    let mut filters = HashMap::new();
    for (key, values) in value.as_object().into_iter().flatten() {
        let list = match values {
            Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Value::Object(map) => map.keys().cloned().collect(),
            _ => return Err(DockerError::bad_request(format!("invalid filter {key:?}"))),
        };
        filters.insert(key.clone(), list);
    }
    Ok(filters)
}

pub fn label_matches(labels: &Labels, wanted: &str) -> bool {
    match wanted.split_once('=') {
        Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
        None => labels.contains_key(wanted),
    }
}

fn passes_filters(docker: &super::Docker, record: &ContainerRecord, filters: &HashMap<String, Vec<String>>) -> DockerResult<bool> {
    for (key, values) in filters {
        let matched = match key.as_str() {
            "status" => values.iter().any(|v| v == docker.state_word(record)),
            "label" => values.iter().all(|v| label_matches(&record.spec.labels, v)),
            "name" => values.iter().any(|v| record.spec.name.contains(v.trim_start_matches('/'))),
            "id" => values.iter().any(|v| docker_id(record).starts_with(v.as_str())),
            "network" => values.iter().any(|v| super::network_attach::on_network(docker, record, v)),
            "ancestor" => values.iter().any(|v| record.spec.image == *v || familiar(&record.image_ref) == *v || record.image_id.contains(v.as_str())),
            "health" => values.iter().any(|v| *v == super::health::filter_word(docker, record)),
            "exited" => values.iter().any(|v| record.state == ContainerState::Exited && v.parse::<i32>().ok() == Some(record.exit_code)),
            "before" | "since" => {
                let other = find(&docker.core, values.first().map(String::as_str).unwrap_or(""))?;
                if key == "before" { record.created_at < other.created_at } else { record.created_at > other.created_at }
            }
            _ => return Err(DockerError::bad_request(format!("invalid filter '{key}'"))),
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(State(docker): State<super::State>, Query(query): Query<ListQuery>) -> DockerResult<Json<Vec<Value>>> {
    let filters = parse_filters(query.filters.as_deref())?;
    let all = truthy(query.all.as_deref()) || query.limit.is_some_and(|l| l > 0);
    let mut records = docker_containers(&docker.core)?;
    records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let sandboxes: HashMap<String, SandboxRecord> = docker.core.list_sandboxes(NAMESPACE)?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut listed = Vec::new();
    for record in records {
        if (!all && record.state != ContainerState::Running) || !passes_filters(&docker, &record, &filters)? {
            continue;
        }
        let mut entry = summary(&docker, &record, sandboxes.get(&record.spec.sandbox_id));
        if truthy(query.size.as_deref()) {
            let usage = docker.core.container_usage(&record).await.map(|u| u.writable_bytes).unwrap_or(0);
            entry["SizeRw"] = json!(usage);
        }
        listed.push(entry);
    }
    if let Some(limit) = query.limit.filter(|l| *l > 0) {
        listed.truncate(limit as usize);
    }
    Ok(Json(listed))
}

fn summary(docker: &super::Docker, record: &ContainerRecord, sandbox: Option<&SandboxRecord>) -> Value {
    let front = Front::of(record);
    json!({
        "Id": docker_id(record),
        "Names": [format!("/{}", record.spec.name)],
        "Image": record.spec.image,
        "ImageID": record.image_id,
        "Command": command_line(&front),
        "Created": seconds(record.created_at),
        "Ports": ports_json(&front),
        "Labels": record.spec.labels,
        "State": docker.state_word(record),
        "Status": docker.status_text(record),
        "HostConfig": {"NetworkMode": front.network},
        "NetworkSettings": {"Networks": super::network_attach::networks_json(docker, record, sandbox)},
        "Mounts": mounts_json(docker, record),
    })
}

fn mounts_json(docker: &super::Docker, record: &ContainerRecord) -> Vec<Value> {
    let one = |m: &crate::core::MountSpec| match docker.volumes.name_of(std::path::Path::new(&m.host_path)) {
        Some(name) => json!({"Type": "volume", "Name": name, "Source": m.host_path, "Destination": m.container_path, "Driver": "local",
            "Mode": if m.readonly { "ro" } else { "z" }, "RW": !m.readonly, "Propagation": ""}),
        None => json!({"Type": "bind", "Source": m.host_path, "Destination": m.container_path, "Mode": if m.readonly { "ro" } else { "" },
            "RW": !m.readonly, "Propagation": format!("r{}", m.propagation.trim_start_matches('r'))}),
    };
    let tmpfs = |m: &Value| {
        let read_only = m["ReadOnly"].as_bool().unwrap_or(false);
        json!({"Type": "tmpfs", "Source": "", "Destination": m["Target"], "Mode": "", "RW": !read_only, "Propagation": ""})
    };
    // `--mount type=tmpfs` ones are listed; `--tmpfs` ones are not, as with dockerd.
    let requested = Front::of(record).host_config.get("Mounts").and_then(|m| m.as_array()).cloned().unwrap_or_default();
    record.spec.mounts.iter().map(one).chain(requested.iter().filter(|m| m["Type"] == "tmpfs").map(tmpfs)).collect()
}

fn time_or_zero(nanos: i64) -> String {
    if nanos == 0 {
        "0001-01-01T00:00:00Z".into()
    } else {
        super::logs::format_time(nanos)
    }
}

fn port_map_json(front: &Front) -> Value {
    let mut ports = serde_json::Map::new();
    for mapping in &front.ports {
        let key = format!("{}/{}", mapping.container_port, mapping.protocol);
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({"HostIp": if mapping.host_ip.is_empty() { "0.0.0.0" } else { &mapping.host_ip }, "HostPort": mapping.host_port.to_string()}));
        }
    }
    Value::Object(ports)
}

/// `State.ExitCode`: dockerd's 128 after a refused start that set none.
fn start_exit_code(record: &ContainerRecord, front: &Front) -> i32 {
    match record.exit_code {
        0 if front.start_error.is_some() && record.state != ContainerState::Running => 128,
        code => code,
    }
}

/// `State.Error`: the message of the last refused start, until one succeeds.
fn start_error<'a>(record: &'a ContainerRecord, front: &'a Front) -> &'a str {
    match &front.start_error {
        Some(message) => message,
        None if record.reason == "StartError" => &record.message,
        None => "",
    }
}

pub fn inspect_json(docker: &super::Docker, record: &ContainerRecord) -> Value {
    let front = Front::of(record);
    let sandbox = docker.core.sandbox(NAMESPACE, &record.spec.sandbox_id).ok();
    let running = record.state == ContainerState::Running;
    let paused = docker.is_paused(docker_id(record));
    let networks = super::network_attach::networks_json(docker, record, sandbox.as_ref());
    let primary = networks.as_object().and_then(|n| n.values().next()).cloned().unwrap_or(Value::Null);
    let log_path = if record.spec.log_path.is_empty() { super::logs::log_path(&docker.core.paths.root, docker_id(record)).display().to_string() } else { record.spec.log_path.clone() };
    let mut host_config = if front.host_config.is_object() { front.host_config.clone() } else { json!({}) };
    host_config["NetworkMode"] = json!(front.network);
    host_config["AutoRemove"] = json!(front.auto_remove);
    host_config["Links"] = super::links::inspect_host_links(docker, record);
    if host_config.get("LogConfig").is_none_or(|v| v.is_null()) {
        // The logs are served as json-file's are (docker-py reads only those).
        host_config["LogConfig"] = json!({"Type": "json-file", "Config": {}});
    }
    let mut state = json!({
        "Status": docker.state_word(record), "Running": running, "Paused": paused, "Restarting": super::restart::is_restarting(record),
        "OOMKilled": record.reason == "OOMKilled", "Dead": false, "Pid": if running { record.pid } else { 0 },
        "ExitCode": start_exit_code(record, &front), "Error": start_error(record, &front),
        "StartedAt": time_or_zero(record.started_at), "FinishedAt": time_or_zero(record.finished_at),
    });
    if let Some(health) = super::health::inspect_json(docker, record) {
        state["Health"] = health;
    }
    json!({
        "Id": docker_id(record),
        "Created": time_or_zero(record.created_at),
        "Path": command_line(&front).split(' ').next().unwrap_or(""),
        "Args": command_line(&front).split(' ').skip(1).collect::<Vec<_>>(),
        "State": state,
        "Image": record.image_id,
        "ResolvConfPath": docker.core.paths.sandbox_dir(docker_id(record)).join("resolv.conf"),
        "HostnamePath": docker.core.paths.sandbox_dir(docker_id(record)).join("hostname"),
        "HostsPath": docker.core.paths.sandbox_dir(docker_id(record)).join("hosts"),
        "LogPath": log_path,
        "Name": format!("/{}", record.spec.name),
        "RestartCount": Front::of(record).restart_count,
        "Driver": "overlayfs",
        "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "HostConfig": host_config,
        "Mounts": mounts_json(docker, record),
        "Config": front.config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": record.spec.sandbox_id, "SandboxKey": sandbox.as_ref().and_then(|s| s.netns.clone()).unwrap_or_default(),
            "Ports": port_map_json(&front),
            "IPAddress": primary["IPAddress"], "IPPrefixLen": primary["IPPrefixLen"], "Gateway": primary["Gateway"], "MacAddress": primary["MacAddress"],
            "Networks": networks,
        },
    })
}

async fn inspect(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Json<Value>> {
    let record = find(&docker.core, &id)?;
    Ok(Json(inspect_json(&docker, &record)))
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

/// Starts a created or exited container, with the stdio berthd serves for it.
/// Its networks are taken again first: a start refused for a network gone leaves the
/// container as it was.
pub async fn start_record(docker: &super::Docker, record: &ContainerRecord) -> DockerResult<()> {
    let started = start_attempt(docker, record).await;
    note_start_error(docker, record, started.as_ref().err()).await;
    started
}

/// As dockerd: a refused start leaves its message in `State.Error` (and exit code 128
/// when none is set); the next start that succeeds clears it.
async fn note_start_error(docker: &super::Docker, record: &ContainerRecord, error: Option<&DockerError>) {
    let had_error = Front::of(record).start_error.is_some();
    if error.is_none() && !had_error {
        return;
    }
    let value = error.map_or(Value::Null, |e| json!(e.message));
    if let Err(failure) = docker.core.update_front(NAMESPACE, &record.id, |front| front["start_error"] = value).await {
        tracing::debug!(%failure, "keeping a container's start error");
    }
}

async fn start_attempt(docker: &super::Docker, record: &ContainerRecord) -> DockerResult<()> {
    let starting = match super::endpoint_release::restore(docker, record).await {
        Ok(starting) => starting,
        Err(error) => {
            // As dockerd: an auto-remove container whose start failed goes.
            if Front::of(record).auto_remove {
                destroy(docker, record, true).await;
            }
            return Err(error);
        }
    };
    crate::crash_point!("docker.start.after_endpoints");
    docker.core.rearm_container(NAMESPACE, &record.id).await?;
    let console = super::attach::console_for(docker, record)?;
    let io = match &console {
        Some(console) => console.prepare_run(&docker.core, &record.id)?,
        None => Default::default(),
    };
    let started = docker.core.start_container_with_io(NAMESPACE, &record.id, &io).await;
    drop(starting);
    if started.is_err() {
        after_failed_start(docker, record).await;
    } else if docker.core.container(NAMESPACE, &record.id).is_ok_and(|now| now.state != ContainerState::Running) {
        // It exited while marked as starting, when its exit could not release.
        super::endpoint_release::release(docker, &record.id).await;
    }
    started.map_err(|error| match error {
        CoreError::FailedPrecondition(message) => DockerError::conflict(message),
        other => DockerError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to create task for container: {other}")),
    })
}

/// A start that failed left an exited container: `die`, and removal for auto-remove
/// ones (whose client waits for the removal).
async fn after_failed_start(docker: &super::Docker, record: &ContainerRecord) {
    super::endpoint_release::release(docker, &record.id).await;
    if let Ok(exited) = docker.core.container(NAMESPACE, &record.id) {
        docker.publish_die(&exited);
        if let Ok(mut exits) = docker.removed_exits.lock() {
            exits.insert(docker_id(&exited).to_string(), exited.exit_code);
        }
    }
    if Front::of(record).auto_remove {
        destroy(docker, record, true).await;
    }
}

/// Removes a container for good (`rm`, `--rm`): its sandbox and files, and with
/// `anonymous_volumes` the anonymous volumes that no other container uses.
pub async fn destroy(docker: &super::Docker, record: &ContainerRecord, anonymous_volumes: bool) {
    let volumes = super::volumes::volumes_of(docker, record);
    discard_sandbox(docker, docker_id(record)).await;
    docker.publish_container(docker_id(record), "destroy", &record.spec.name, &record.spec.image);
    if anonymous_volumes {
        let _guard = docker.volume_lock.lock().await;
        super::volumes::remove_anonymous(docker, &volumes);
    }
}

async fn start(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    if record.state == ContainerState::Running {
        return Ok(not_modified());
    }
    super::links::check_peers_running(&docker, &record)?;
    super::restart::mark_manual_stop(&docker, &record, false).await?;
    docker.restarts.forget(docker_id(&record));
    start_record(&docker, &record).await?;
    Ok(no_content())
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct StopQuery {
    t: Option<i64>,
    signal: Option<String>,
}

async fn stop_record(docker: &super::Docker, record: &ContainerRecord, timeout: Option<i64>) -> DockerResult<()> {
    let front = Front::of(record);
    let timeout = timeout.unwrap_or(front.stop_timeout);
    let stop_signal = signal_number(if front.stop_signal.is_empty() { "SIGTERM" } else { &front.stop_signal })?;
    if docker.is_paused(docker_id(record)) {
        let _ = docker.core.set_paused(NAMESPACE, &record.id, false).await;
        docker.paused.lock().map(|mut p| p.remove(docker_id(record))).ok();
    }
    if stop_signal != libc::SIGTERM as u32 && timeout > 0 {
        let _ = docker.core.signal_container(NAMESPACE, &record.id, stop_signal, false).await;
    }
    docker.core.stop_container(NAMESPACE, &record.id, timeout.max(0)).await?;
    super::endpoint_release::release(docker, &record.id).await;
    Ok(())
}

async fn stop(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<StopQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    if let Some(signal) = &query.signal {
        signal_number(signal)?;
    }
    // As in dockerd, a container waiting out its restart back-off counts as running:
    // the stop cancels the restart.
    if !super::restart::stop_by_user(&docker, &record.id).await? {
        return Ok(not_modified());
    }
    // A policy restart that won the race ran before the mark: what it started stops too.
    let record = find(&docker.core, &id)?;
    if record.state == ContainerState::Running {
        stop_record(&docker, &record, query.t).await?;
    }
    docker.publish_container(docker_id(&record), "stop", &record.spec.name, &record.spec.image);
    Ok(no_content())
}

async fn restart(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<StopQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    // Stopped by its user for the length of the restart: no policy restart meanwhile.
    super::restart::mark_manual_stop(&docker, &record, true).await?;
    // A restart that won the race ran before the mark: what it started stops too.
    let record = find(&docker.core, &id)?;
    if record.state == ContainerState::Running {
        stop_record(&docker, &record, query.t).await?;
    }
    let record = find(&docker.core, &id)?;
    super::restart::mark_manual_stop(&docker, &record, false).await?;
    docker.restarts.forget(docker_id(&record));
    start_record(&docker, &record).await?;
    docker.publish_container(docker_id(&record), "restart", &record.spec.name, &record.spec.image);
    Ok(no_content())
}

/// `SIGKILL`, `KILL` or `9`.
pub fn signal_number(text: &str) -> DockerResult<u32> {
    if let Ok(number) = text.parse::<u32>() {
        if (1..=64).contains(&number) {
            return Ok(number);
        }
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>().map(|s| s as u32).map_err(|_| DockerError::bad_request(format!("Invalid signal: {text}")))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct KillQuery {
    signal: Option<String>,
}

async fn kill(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<KillQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let signal = signal_number(query.signal.as_deref().unwrap_or("SIGKILL"))?;
    if record.state != ContainerState::Running {
        return Err(DockerError::conflict(format!("cannot kill container: {id}: container {} is not running", docker_id(&record))));
    }
    // As dockerd: a kill with SIGKILL or the stop signal is a stop by the user.
    let stop_signal = Some(Front::of(&record).stop_signal).filter(|s| !s.is_empty()).unwrap_or_else(|| "SIGTERM".into());
    if signal == libc::SIGKILL as u32 || signal_number(&stop_signal).ok() == Some(signal) {
        super::restart::mark_manual_stop(&docker, &record, true).await?;
    }
    docker.core.signal_container(NAMESPACE, &record.id, signal, false).await?;
    docker.publish_container(docker_id(&record), "kill", &record.spec.name, &record.spec.image);
    if signal == libc::SIGKILL as u32 {
        wait_until(&docker, &record.id, |r| r.is_none_or(|r| r.state != ContainerState::Running), Duration::from_secs(5)).await;
    }
    Ok(no_content())
}

/// Polls the record until `done` holds or `limit` passes.
async fn wait_until(docker: &super::Docker, core_id: &str, done: impl Fn(Option<&ContainerRecord>) -> bool, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done(docker.core.container(NAMESPACE, core_id).ok().as_ref()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn set_paused(docker: &super::Docker, id: &str, paused: bool) -> DockerResult<Response> {
    let record = find(&docker.core, id)?;
    let docker_id = docker_id(&record).to_string();
    if record.state != ContainerState::Running {
        return Err(DockerError::conflict(format!("Container {docker_id} is not running")));
    }
    if docker.is_paused(&docker_id) == paused {
        let word = if paused { "already paused" } else { "not paused" };
        return Err(DockerError::conflict(format!("Container {docker_id} is {word}")));
    }
    docker.core.set_paused(NAMESPACE, &record.id, paused).await?;
    if let Ok(mut set) = docker.paused.lock() {
        if paused {
            set.insert(docker_id.clone());
        } else {
            set.remove(&docker_id);
        }
    }
    docker.publish_container(&docker_id, if paused { "pause" } else { "unpause" }, &record.spec.name, &record.spec.image);
    Ok(no_content())
}

async fn pause(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Response> {
    set_paused(&docker, &id, true).await
}

async fn unpause(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Response> {
    set_paused(&docker, &id, false).await
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct WaitQuery {
    condition: Option<String>,
}

fn exit_code_of(docker: &super::Docker, docker_id: &str, core_id: &str) -> i32 {
    match docker.core.container(NAMESPACE, core_id) {
        Ok(record) => record.exit_code,
        Err(_) => docker.removed_exits.lock().ok().and_then(|m| m.get(docker_id).copied()).unwrap_or(0),
    }
}

async fn wait(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<WaitQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let condition = query.condition.unwrap_or_else(|| "not-running".into());
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(DockerError::bad_request(format!("invalid condition: {condition:?}")));
    }
    let mut events = docker.core.events.subscribe();
    let current = docker.core.container(NAMESPACE, &record.id).ok();
    let waiting = async move {
        let done_now = match condition.as_str() {
            "not-running" => current.as_ref().is_none_or(|r| r.state != ContainerState::Running),
            "removed" => current.is_none(),
            _ => false,
        };
        let wanted = if condition == "removed" { LifecycleEvent::Deleted } else { LifecycleEvent::Stopped };
        while !done_now {
            match events.recv().await {
                Ok(event) if event.namespace == NAMESPACE && event.container_id == record.id && event.kind == wanted => break,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if docker.core.container(NAMESPACE, &record.id).map(|r| r.state != ContainerState::Running).unwrap_or(true) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let code = exit_code_of(&docker, docker_id(&record), &record.id);
        Ok::<_, std::convert::Infallible>(Bytes::from(json!({"StatusCode": code, "Error": null}).to_string() + "\n"))
    };
    let body = Body::from_stream(futures_util::stream::once(waiting));
    Ok(([("content-type", "application/json")], body).into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RemoveQuery {
    force: Option<String>,
    v: Option<String>,
}

async fn remove(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<RemoveQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    if record.state == ContainerState::Running && !truthy(query.force.as_deref()) {
        return Err(DockerError::conflict(format!(
            "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
            record.spec.name
        )));
    }
    destroy(&docker, &record, truthy(query.v.as_deref())).await;
    Ok(no_content())
}

async fn prune(State(docker): State<super::State>) -> DockerResult<Json<Value>> {
    let mut deleted = Vec::new();
    for record in docker_containers(&docker.core)? {
        if record.state != ContainerState::Running {
            discard_sandbox(&docker, docker_id(&record)).await;
            docker.publish_container(docker_id(&record), "destroy", &record.spec.name, &record.spec.image);
            deleted.push(docker_id(&record).to_string());
        }
    }
    Ok(Json(json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0})))
}

/// One `ps`-like row from /proc: UID PID PPID C STIME TTY TIME CMD.
fn process_row(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = after.split(' ').collect();
    let ppid = fields.get(1)?.to_string();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next()).unwrap_or("0").to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let command = String::from_utf8_lossy(&cmdline).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    let secs = ticks / 100;
    let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let started = fields.get(19).and_then(|t| t.parse::<u64>().ok()).map(start_time_text).unwrap_or_default();
    Some(vec![uid, pid.to_string(), ppid, "0".into(), started, "?".into(), time, command])
}

/// `ps -ef`'s STIME of a process started `ticks` after boot: the time of day when it
/// started today, else the month and day, else the year.
fn start_time_text(ticks: u64) -> String {
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|b| b.trim().parse::<i64>().ok()));
    let Some(started) = boot.and_then(|boot| chrono::DateTime::from_timestamp(boot + (ticks / 100) as i64, 0)) else {
        return String::new();
    };
    let started = started.with_timezone(&chrono::Local);
    let now = chrono::Local::now();
    let format = if started.date_naive() == now.date_naive() {
        "%H:%M"
    } else if chrono::Datelike::year(&started) == chrono::Datelike::year(&now) {
        "%b%d"
    } else {
        "%Y"
    };
    started.format(format).to_string()
}

async fn top(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Json<Value>> {
    let record = find(&docker.core, &id)?;
    if record.state != ContainerState::Running {
        return Err(DockerError::conflict(format!("container {} is not running", docker_id(&record))));
    }
    let mut pids = docker.core.container_pids(NAMESPACE, &record.id).await?;
    pids.sort_unstable();
    let rows: Vec<Vec<String>> = pids.into_iter().filter_map(process_row).collect();
    Ok(Json(json!({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows})))
}

/// `?h=&w=` of a container's or an exec's resize.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct ResizeQuery {
    pub(super) h: Option<u32>,
    pub(super) w: Option<u32>,
}

async fn resize(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<ResizeQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    if record.state != ContainerState::Running {
        return Err(DockerError::conflict(format!("Container {} is not running", docker_id(&record))));
    }
    docker.core.resize_terminal(NAMESPACE, &record.id, "", query.w.unwrap_or(80), query.h.unwrap_or(24)).await?;
    Ok(StatusCode::OK.into_response())
}

/// The HostConfig fields `docker update` changes. The CLI sends every one of them, and
/// as with dockerd a zero (or empty) value leaves the field as it is (but PidsLimit).
const UPDATABLE: [&str; 10] = ["Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "CpusetCpus", "CpusetMems", "PidsLimit"];

fn is_given(key: &str, value: &Value) -> bool {
    match value {
        // Sent only when asked for: 0 there means unlimited.
        Value::Number(_) if key == "PidsLimit" => true,
        Value::Null => false,
        Value::Number(n) => n.as_i64() != Some(0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// The resources after an update that changes the `given` fields of `host`.
fn updated_resources(current: &Resources, host: &super::create::HostConfig, given: &[&str]) -> Resources {
    let mut resources = current.clone();
    let wanted = super::create::resources_of(host);
    let has = |key: &str| given.contains(&key);
    if has("Memory") {
        resources.memory_limit_bytes = wanted.memory_limit_bytes;
    }
    if has("MemorySwap") {
        resources.memory_swap_limit_bytes = wanted.memory_swap_limit_bytes;
    }
    if has("CpuShares") {
        resources.cpu_shares = wanted.cpu_shares;
    }
    if has("CpuQuota") || has("NanoCpus") {
        resources.cpu_quota = wanted.cpu_quota;
    }
    if has("CpuPeriod") || has("NanoCpus") {
        resources.cpu_period = wanted.cpu_period;
    }
    if has("CpusetCpus") {
        resources.cpuset_cpus = wanted.cpuset_cpus;
    }
    if has("CpusetMems") {
        resources.cpuset_mems = wanted.cpuset_mems;
    }
    if let Some(pids) = host.pids_limit.filter(|_| has("PidsLimit")) {
        // Zero or negative: unlimited, as dockerd's update.
        resources.pids_limit = if pids > 0 { pids } else { -1 };
    }
    resources
}

async fn update(State(docker): State<super::State>, Path(id): Path<String>, bytes: Bytes) -> DockerResult<Json<Value>> {
    let record = find(&docker.core, &id)?;
    let invalid = |e: serde_json::Error| DockerError::bad_request(format!("invalid update: {e}"));
    let raw: Value = serde_json::from_slice(&bytes).map_err(invalid)?;
    let host: super::create::HostConfig = serde_json::from_value(raw.clone()).map_err(invalid)?;
    let given: Vec<&str> = UPDATABLE.into_iter().filter(|key| raw.get(*key).is_some_and(|value| is_given(key, value))).collect();
    let policy = host.restart_policy.clone().filter(|p| !p.name.is_empty());
    if let Some(policy) = &policy {
        super::restart::validate(policy, Front::of(&record).auto_remove)?;
    }
    if !given.is_empty() {
        let resources = updated_resources(&record.spec.resources, &host, &given);
        docker.core.update_container_resources(NAMESPACE, &record.id, resources).await?;
    }
    docker
        .core
        .update_front(NAMESPACE, &record.id, |front| {
            if !front["host_config"].is_object() {
                front["host_config"] = json!({});
            }
            for key in &given {
                front["host_config"][*key] = raw[*key].clone();
            }
            if let Some(policy) = &policy {
                front["host_config"]["RestartPolicy"] = json!(policy);
                front["restart_policy"] = json!(policy);
            }
        })
        .await?;
    docker.publish_container(docker_id(&record), "update", &record.spec.name, &record.spec.image);
    Ok(Json(json!({"Warnings": []})))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RenameQuery {
    name: Option<String>,
}

async fn rename(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<RenameQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let name = query.name.unwrap_or_default().trim_start_matches('/').to_string();
    if !super::create::valid_name(&name) {
        return Err(DockerError::bad_request(format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
    }
    if let Some(owner) = docker_containers(&docker.core)?.iter().find(|c| c.spec.name == name) {
        return Err(DockerError::conflict(super::create::conflict_message(&name, docker_id(owner))));
    }
    docker.core.rename_container(NAMESPACE, &record.id, &name).await?;
    docker.publish_container(docker_id(&record), "rename", &name, &record.spec.image);
    Ok(no_content())
}

/// Follows the core's events: Docker's start and die events, and the removal of
/// auto-remove containers once they exit.
pub async fn watch_exits(docker: super::State) {
    let mut events = docker.core.events.subscribe();
    super::endpoint_release::release_stopped(&docker).await;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if event.namespace != NAMESPACE {
            continue;
        }
        let Ok(record) = docker.core.container(NAMESPACE, &event.container_id) else { continue };
        match event.kind {
            LifecycleEvent::Started => {
                docker.publish_volume_mounts(&record, true);
                docker.publish_container(docker_id(&record), "start", &record.spec.name, &record.spec.image);
                super::health::start_checker(&docker, &record);
            }
            LifecycleEvent::Stopped => {
                super::health::stop_checker(&docker, &record);
                docker.publish_die(&record);
                docker.publish_volume_mounts(&record, false);
                super::endpoint_release::release(&docker, &record.id).await;
                if Front::of(&record).auto_remove {
                    let docker = docker.clone();
                    tokio::spawn(async move {
                        if let Ok(mut exits) = docker.removed_exits.lock() {
                            exits.insert(docker_id(&record).to_string(), record.exit_code);
                        }
                        destroy(&docker, &record, true).await;
                    });
                } else {
                    super::restart::after_exit(docker.clone(), record);
                }
            }
            _ => {}
        }
    }
}
