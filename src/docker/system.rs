//! System routes: `_ping`, version, info, disk usage, login, and the event stream
//! (container, image and network actions, with filters, since and until).
use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::containers::{docker_containers, parse_filters};
use super::{DockerError, DockerResult, API_VERSION, MIN_API_VERSION};
use crate::core::*;

pub async fn ping() -> Response {
    let headers = [
        ("Api-Version", API_VERSION),
        ("Docker-Experimental", "false"),
        ("OSType", "linux"),
        ("Builder-Version", "1"),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Pragma", "no-cache"),
        ("content-type", "text/plain; charset=utf-8"),
    ];
    (headers, "OK").into_response()
}

fn kernel_version() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

fn os_name() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()).unwrap_or_else(|| "Linux".into())
}

fn component(name: &str, program: &str) -> Value {
    json!({"Name": name, "Version": env!("CARGO_PKG_VERSION"), "Details": {"Program": program, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux"}})
}

pub async fn version() -> Json<Value> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Json(json!({
        "Platform": {"Name": "berth"},
        "Components": [component("Engine", "berthd"), component("berth-shim", "berth-shim"), component("berth-runc", "berth-runc")],
        "Version": env!("CARGO_PKG_VERSION"), "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": arch, "KernelVersion": kernel_version(), "BuildTime": "",
    }))
}

fn memory_total() -> u64 {
    super::attach::host_memory()
}

pub async fn info(State(docker): State<super::State>) -> DockerResult<Json<Value>> {
    let core = &docker.core;
    let containers = docker_containers(core)?;
    let count = |state: &str| containers.iter().filter(|c| docker.state_word(c) == state).count();
    let images = core.images.list()?.len();
    let config = &core.config;
    let mirrors: Vec<String> = config.registry.get("docker.io").map(|h| h.mirrors.clone()).unwrap_or_default();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" };
    let mut answer = json!({
        "ID": "berth", "Containers": containers.len(), "ContainersRunning": count("running"), "ContainersPaused": count("paused"),
        "ContainersStopped": count("exited") + count("created"), "Images": images,
        "Driver": "overlayfs", "DriverStatus": [["Backing Filesystem", "overlay"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["local"]},
        "MemoryLimit": true, "SwapLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true, "CPUShares": true, "CPUSet": true, "PidsLimit": true,
        "IPv4Forwarding": true, "Debug": false, "NFd": 0, "NGoroutines": 0, "SystemTime": super::logs::format_time(now_nanos()),
        "LoggingDriver": "local", "CgroupDriver": config.cgroup_driver, "CgroupVersion": cgroup_version, "NEventsListener": docker.events.receiver_count(),
    });
    let host = json!({
        "KernelVersion": kernel_version(), "OperatingSystem": os_name(), "OSVersion": "", "OSType": "linux", "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "MemTotal": memory_total(),
        "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": {"Mirrors": mirrors, "IndexConfigs": {}, "InsecureRegistryCIDRs": []},
        "DockerRootDir": config.root, "Name": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
        "Labels": [], "ExperimentalBuild": false, "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"berth": {"path": "berth-runc"}}, "DefaultRuntime": "berth", "LiveRestoreEnabled": true, "Isolation": "",
        "InitBinary": "", "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": [],
    });
    if let (Some(answer), Value::Object(host)) = (answer.as_object_mut(), host) {
        answer.extend(host);
    }
    Ok(Json(answer))
}

pub async fn disk_usage(State(docker): State<super::State>) -> DockerResult<Json<Value>> {
    let images: Vec<Value> = docker.core.images.list()?.iter().map(|i| json!({"Id": i.id, "RepoTags": i.repo_tags, "Size": i.size, "SharedSize": -1, "Containers": -1})).collect();
    let containers: Vec<Value> = docker_containers(&docker.core)?.iter().map(|c| json!({"Id": c.spec.sandbox_id, "Names": [format!("/{}", c.spec.name)], "Image": c.spec.image, "State": docker.state_word(c)})).collect();
    let (bytes, _) = docker.core.images.fs_usage()?;
    Ok(Json(json!({"LayersSize": bytes, "Images": images, "Containers": containers, "Volumes": [], "BuildCache": []})))
}

/// One Docker event, as `/events` streams it.
#[derive(Debug, Clone, Serialize)]
pub struct DockerEvent {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Value,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    pub status: String,
    pub id: String,
    pub from: String,
}

impl super::Docker {
    pub(super) fn publish(&self, kind: &str, action: &str, id: &str, attributes: Value, from: &str) {
        let now = now_nanos();
        let event = DockerEvent {
            kind: kind.into(),
            action: action.into(),
            actor: json!({"ID": id, "Attributes": attributes}),
            scope: "local".into(),
            time: now / 1_000_000_000,
            time_nano: now,
            status: action.into(),
            id: id.into(),
            from: from.into(),
        };
        if let Ok(mut history) = self.event_history.lock() {
            if history.len() >= 1000 {
                history.remove(0);
            }
            history.push(event.clone());
        }
        let _ = self.events.send(event);
    }

    /// An event whose attributes carry `labels` too, as dockerd's container events do.
    pub(super) fn publish_with(&self, kind: &str, action: &str, id: &str, mut attributes: Value, labels: &Labels, from: &str) {
        if let Some(object) = attributes.as_object_mut() {
            for (key, value) in labels {
                object.entry(key.clone()).or_insert_with(|| json!(value));
            }
        }
        self.publish(kind, action, id, attributes, from);
    }

    /// A container event, with the container's labels while it exists.
    pub fn publish_container(&self, id: &str, action: &str, name: &str, image: &str) {
        let labels = super::containers::find(&self.core, id).map(|record| record.spec.labels).unwrap_or_default();
        self.publish_with("container", action, id, json!({"name": name, "image": image}), &labels, image);
    }

    pub fn publish_die(&self, record: &ContainerRecord) {
        let attributes = json!({"name": record.spec.name, "image": record.spec.image, "exitCode": record.exit_code.to_string()});
        self.publish_with("container", "die", &record.spec.sandbox_id, attributes, &record.spec.labels, &record.spec.image);
    }

    pub fn publish_image(&self, id: &str, action: &str, name: &str) {
        self.publish("image", action, id, json!({"name": name}), "");
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

fn event_time(text: Option<&str>) -> DockerResult<Option<i64>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    if let Some(nanos) = super::logs::parse_time(text) {
        return Ok(Some(nanos));
    }
    let seconds: f64 = text.parse().map_err(|_| DockerError::bad_request(format!("invalid time value {text:?}")))?;
    Ok(Some((seconds * 1e9) as i64))
}

fn event_passes(event: &DockerEvent, filters: &HashMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| {
        let attribute = |name: &str| event.actor["Attributes"][name].as_str().unwrap_or("").to_string();
        values.iter().any(|value| match key.as_str() {
            "type" => event.kind == *value,
            // As dockerd: these three match their actions with a detail (`health_status: healthy`).
            "event" if matches!(value.as_str(), "health_status" | "exec_create" | "exec_start") => event.action.starts_with(value.as_str()),
            "event" => event.action == *value,
            "container" => event.kind == "container" && (event.id.starts_with(value.as_str()) || attribute("name") == *value),
            "image" => attribute("image") == *value || attribute("name") == *value || event.id == *value,
            "volume" => event.kind == "volume" && event.id == *value,
            "network" => event.kind == "network" && (event.id.starts_with(value.as_str()) || attribute("name") == *value),
            "label" => super::containers::label_matches(&attribute_labels(event), value),
            _ => false,
        })
    })
}

/// An event's attributes as labels, for the `label` filter.
fn attribute_labels(event: &DockerEvent) -> Labels {
    let attributes = event.actor["Attributes"].as_object().into_iter().flatten();
    attributes.filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string()))).collect()
}

pub async fn events(State(docker): State<super::State>, Query(query): Query<EventsQuery>, _headers: HeaderMap) -> DockerResult<Response> {
    let filters = parse_filters(query.filters.as_deref())?;
    let since = event_time(query.since.as_deref())?;
    let until = event_time(query.until.as_deref())?;
    let mut live = docker.events.subscribe();
    let past: Vec<DockerEvent> = match since {
        Some(since) => docker.event_history.lock().map(|h| h.iter().filter(|e| e.time_nano >= since).cloned().collect()).unwrap_or_default(),
        None => Vec::new(),
    };
    let (output, pending) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let within = |e: &DockerEvent| until.is_none_or(|u| e.time_nano <= u);
        for event in past.iter().filter(|e| within(e) && event_passes(e, &filters)) {
            if output.send(Bytes::from(serde_json::to_string(event).unwrap_or_default() + "\n")).await.is_err() {
                return;
            }
        }
        loop {
            let deadline = until.map(|u| std::time::Duration::from_nanos((u - now_nanos()).max(0) as u64));
            let next = match deadline {
                Some(limit) => match tokio::time::timeout(limit, live.recv()).await {
                    Ok(next) => next,
                    Err(_) => return,
                },
                None => live.recv().await,
            };
            match next {
                Ok(event) if within(&event) && event_passes(&event, &filters) => {
                    if output.send(Bytes::from(serde_json::to_string(&event).unwrap_or_default() + "\n")).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
    let stream = futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(pending), Ok::<_, std::convert::Infallible>);
    Ok(([("content-type", "application/json")], Body::from_stream(stream)).into_response())
}
