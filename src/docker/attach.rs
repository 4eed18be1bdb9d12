//! A container's output for clients: attach (hijacked, with stdin), logs (from the
//! log file, following it while the container runs) and stats (from the cgroup
//! counters, one-shot or every second).
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::{docker_id, find, truthy};
use super::create::Front;
use super::hijack::{self, Input, Output};
use super::logs::{self, Selection};
use super::stdio::Console;
use super::{DockerError, DockerResult, NAMESPACE};
use crate::core::*;

/// The console of a container that needs one (TTY or open stdin), made on first use.
pub fn console_for(docker: &super::Docker, record: &ContainerRecord) -> DockerResult<Option<Arc<Console>>> {
    let front = Front::of(record);
    if !record.spec.tty && !front.open_stdin {
        return Ok(None);
    }
    let id = docker_id(record).to_string();
    if let Some(console) = docker.console(&id) {
        return Ok(Some(console));
    }
    let dir = docker.core.paths.state.join("docker").join(&id);
    let console = Arc::new(Console::new(dir, logs::log_path(&docker.core.paths.root, &id), record.spec.tty, front.open_stdin)?);
    let mut consoles = docker.consoles.lock().map_err(|_| DockerError::internal("console table poisoned"))?;
    Ok(Some(consoles.entry(id).or_insert(console).clone()))
}

fn is_live(core: &Core, core_id: &str) -> bool {
    core.container(NAMESPACE, core_id).is_ok_and(|r| matches!(r.state, ContainerState::Created | ContainerState::Running))
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
pub struct AttachQuery {
    stream: Option<String>,
    stdin: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    logs: Option<String>,
}

pub async fn attach(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<AttachQuery>, mut request: Request) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let console = console_for(&docker, &record)?;
    let tty = record.spec.tty;
    let selection = Selection { stdout: truthy(query.stdout.as_deref()), stderr: truthy(query.stderr.as_deref()), ..Selection::default() };
    let log = logs::open_log(&logs::log_path(&docker.core.paths.root, docker_id(&record)));
    let mut log = log.map_err(|e| DockerError::internal(format!("opening the container's log: {e}")))?;
    let session = move |output: Output, input: Option<Input>| async move {
        let offset = if truthy(query.logs.as_deref()) { logs::send_existing(&mut log, tty, &selection, &output).await } else { logs::file_size(&log) };
        if !truthy(query.stream.as_deref()) {
            return;
        }
        let front = Front::of(&record);
        if let (Some(console), Some(input), true) = (console.clone(), input, truthy(query.stdin.as_deref())) {
            let (docker, core_id) = (docker.clone(), record.id.clone());
            tokio::spawn(async move {
                console.feed_stdin(input).await;
                if front.stdin_once {
                    close_stdin_when_read(&docker, &core_id, &console).await;
                }
            });
        }
        match (tty, console) {
            (true, Some(console)) => relay_terminal(&docker, &record, &console, &output).await,
            _ => logs::follow(&mut log, offset, false, &selection, &output, || is_live(&docker.core, &record.id)).await,
        }
    };
    Ok(hijack::respond(&mut request, tty, session))
}

/// Docker's StdinOnce: once the client's input ended and the shim has read it all,
/// the container's stdin is closed (once it runs; an exited one has none).
async fn close_stdin_when_read(docker: &super::Docker, core_id: &str, console: &Console) {
    loop {
        match docker.core.container(NAMESPACE, core_id).map(|r| r.state) {
            Ok(ContainerState::Created) => tokio::time::sleep(Duration::from_millis(10)).await,
            Ok(ContainerState::Running) => break,
            _ => return,
        }
    }
    console.wait_drained().await;
    if let Err(error) = docker.core.close_stdin(NAMESPACE, core_id, "").await {
        tracing::debug!(container = %core_id, %error, "closing stdin");
    }
}

/// Sends a TTY container's output until its run ends (or it is not running at all).
async fn relay_terminal(docker: &super::Docker, record: &ContainerRecord, console: &Console, output: &Output) {
    let mut receiver = console.output.subscribe();
    if !is_live(&docker.core, &record.id) {
        return;
    }
    loop {
        match receiver.recv().await {
            Ok(Some(bytes)) => {
                if output.send(bytes).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct LogsQuery {
    follow: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    since: Option<String>,
    until: Option<String>,
    timestamps: Option<String>,
    tail: Option<String>,
}

/// Docker's time arguments: seconds since the epoch, with an optional fraction.
fn epoch_nanos(text: Option<&str>) -> DockerResult<i64> {
    let Some(text) = text.filter(|t| !t.is_empty() && *t != "0") else { return Ok(0) };
    if let Some(nanos) = logs::parse_time(text) {
        return Ok(nanos);
    }
    let seconds: f64 = text.parse().map_err(|_| DockerError::bad_request(format!("invalid time value {text:?}")))?;
    Ok((seconds * 1e9) as i64)
}

fn selection(query: &LogsQuery) -> DockerResult<Selection> {
    let selection = Selection {
        stdout: truthy(query.stdout.as_deref()),
        stderr: truthy(query.stderr.as_deref()),
        timestamps: truthy(query.timestamps.as_deref()),
        tail: match query.tail.as_deref() {
            None | Some("all") | Some("") => None,
            Some(n) => Some(n.parse().map_err(|_| DockerError::bad_request(format!("invalid tail value {n:?}")))?),
        },
        since_nanos: epoch_nanos(query.since.as_deref())?,
        until_nanos: epoch_nanos(query.until.as_deref())?,
    };
    if !selection.stdout && !selection.stderr {
        return Err(DockerError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    Ok(selection)
}

pub async fn logs(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<LogsQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let selection = selection(&query)?;
    let tty = record.spec.tty;
    let follow = truthy(query.follow.as_deref());
    let (output, pending) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let Ok(mut log) = logs::open_log(&logs::log_path(&docker.core.paths.root, docker_id(&record))) else { return };
        let offset = logs::send_existing(&mut log, tty, &selection, &output).await;
        if follow {
            logs::follow(&mut log, offset, tty, &selection, &output, || is_live(&docker.core, &record.id)).await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(pending);
    let body = Body::from_stream(futures_util::StreamExt::map(stream, Ok::<_, std::convert::Infallible>));
    Ok(([("content-type", hijack::content_type(tty))], body).into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct StatsQuery {
    stream: Option<String>,
    #[serde(rename = "one-shot")]
    one_shot: Option<String>,
}

/// The host's CPU time in nanoseconds (`/proc/stat`, in USER_HZ ticks).
fn system_cpu_nanos() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).sum();
    ticks * 10_000_000
}

async fn sample(docker: &super::Docker, record: &ContainerRecord) -> Value {
    let running = docker.core.container(NAMESPACE, &record.id).is_ok_and(|r| r.state == ContainerState::Running);
    let usage = if running { docker.core.container_usage(record).await.unwrap_or_default() } else { crate::core::stats::Usage::default() };
    let limit = if usage.memory_limit_bytes == 0 || usage.memory_limit_bytes > (1 << 62) { host_memory() } else { usage.memory_limit_bytes };
    json!({
        "read": logs::format_time(now_nanos()), "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {"current": usage.processes},
        "cpu_stats": {"cpu_usage": {"total_usage": usage.cpu_usage_nanos, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                      "system_cpu_usage": system_cpu_nanos(), "online_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), "throttling_data": {}},
        "memory_stats": {"usage": usage.memory_usage_bytes, "limit": limit, "stats": {"inactive_file": usage.memory_usage_bytes - usage.memory_working_set_bytes, "rss": usage.memory_rss_bytes}},
        "blkio_stats": {}, "networks": {},
        "name": format!("/{}", record.spec.name), "id": docker_id(record),
    })
}

pub fn host_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = info.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|l| l.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    kib * 1024
}

pub async fn stats(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<StatsQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let stream = query.stream.as_deref().is_none_or(|s| truthy(Some(s)));
    let one_shot = truthy(query.one_shot.as_deref());
    let (output, pending) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut previous = sample(&docker, &record).await;
        if !stream && !one_shot {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        loop {
            let mut current = if !stream && one_shot { previous.clone() } else { sample(&docker, &record).await };
            current["precpu_stats"] = previous["cpu_stats"].clone();
            if output.send(Bytes::from(current.to_string() + "\n")).await.is_err() || !stream {
                return;
            }
            previous = current;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let body = Body::from_stream(futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(pending), Ok::<_, std::convert::Infallible>));
    Ok(([("content-type", "application/json")], body).into_response())
}
