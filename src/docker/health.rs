//! Healthchecks: the container's `Healthcheck` (its own, over the image's), probed by
//! an exec in the container on a timer while it runs, with Docker's rules: `starting`
//! until a probe passes, `unhealthy` after Retries failures in a row (failures in the
//! start period do not count), a probe that overruns its timeout is killed and fails,
//! the last five results kept, `health_status: …` events, and `unhealthy` once the
//! checker stops with its container. The state is kept in the container's record
//! (`front.health`, written at each result and at start and stop): after a berthd
//! restart inspect shows it at once and the checker carries on from it; a start of the
//! container resets it to `starting` (the log kept), as dockerd does.
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::containers::docker_id;
use super::create::Front;
use super::error::{DockerError, DockerResult};
use super::NAMESPACE;
use crate::core::records::{ContainerRecord, ContainerState};
use crate::core::{now_nanos, CoreError};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Docker keeps this many results in `State.Health.Log`.
const KEPT_RESULTS: usize = 5;
/// Docker keeps this much of a probe's output, and marks the cut with `...`.
const KEPT_OUTPUT: usize = 4096;

/// `Healthcheck` of a container config or an image config (durations in nanoseconds,
/// zero meaning "inherit, else Docker's default").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub test: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub interval: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub timeout: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub start_period: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub start_interval: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub retries: i64,
}

/// docker-py (and so compose 1.29) sends the fields it was not given as null.
fn null_as_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl HealthConfig {
    /// The container's healthcheck over the image's, field by field, as dockerd merges.
    pub fn merged(own: Option<HealthConfig>, image: Option<HealthConfig>) -> Option<HealthConfig> {
        let Some(image) = image else { return own };
        let Some(mut own) = own else { return Some(image) };
        if own.test.is_empty() {
            own.test = image.test;
        }
        for (mine, theirs) in [
            (&mut own.interval, image.interval),
            (&mut own.timeout, image.timeout),
            (&mut own.start_period, image.start_period),
            (&mut own.start_interval, image.start_interval),
            (&mut own.retries, image.retries),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
        Some(own)
    }

    /// The healthcheck a container config carries, if it has one that runs.
    pub fn of_config(config: &Value) -> Option<HealthConfig> {
        let check: HealthConfig = serde_json::from_value(config.get("Healthcheck")?.clone()).ok()?;
        check.command().is_some().then_some(check)
    }

    /// What the probe runs: `CMD` is the command itself, `CMD-SHELL` runs in `/bin/sh -c`;
    /// `NONE` and nothing mean no healthcheck.
    pub fn command(&self) -> Option<Vec<String>> {
        let (kind, rest) = self.test.split_first()?;
        match kind.as_str() {
            "CMD" if !rest.is_empty() => Some(rest.to_vec()),
            "CMD-SHELL" if !rest.is_empty() => Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]),
            _ => None,
        }
    }

    /// Docker's checks at create.
    pub fn validate(&self) -> DockerResult<()> {
        for (value, name) in [(self.interval, "Interval"), (self.timeout, "Timeout"), (self.start_period, "StartPeriod"), (self.start_interval, "StartInterval")] {
            if value != 0 && value < 1_000_000 {
                return Err(DockerError::bad_request(format!("{name} in Healthcheck cannot be less than 1ms")));
            }
        }
        if self.retries < 0 {
            return Err(DockerError::bad_request("Retries in Healthcheck cannot be negative"));
        }
        match self.test.first().map(String::as_str) {
            None | Some("NONE" | "CMD" | "CMD-SHELL") => Ok(()),
            Some(other) => Err(DockerError::bad_request(format!("unknown healthcheck type {other:?} (expected NONE, CMD or CMD-SHELL)"))),
        }
    }

    fn duration(nanos: i64, default: Duration) -> Duration {
        if nanos > 0 {
            Duration::from_nanos(nanos as u64)
        } else {
            default
        }
    }

    fn interval(&self) -> Duration {
        Self::duration(self.interval, DEFAULT_INTERVAL)
    }

    fn timeout(&self) -> Duration {
        Self::duration(self.timeout, DEFAULT_TIMEOUT)
    }

    fn start_period(&self) -> Duration {
        Self::duration(self.start_period, Duration::ZERO)
    }

    fn start_interval(&self) -> Duration {
        Self::duration(self.start_interval, DEFAULT_START_INTERVAL)
    }

    fn retries(&self) -> i64 {
        if self.retries > 0 {
            self.retries
        } else {
            DEFAULT_RETRIES
        }
    }
}

/// One probe's result, as `State.Health.Log` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub start: i64,
    pub end: i64,
    pub exit_code: i32,
    pub output: String,
}

/// Where a container's health stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// A container's health, as kept in memory and in its record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: i64,
    pub log: VecDeque<ProbeResult>,
}

/// The key of the container record's `front` that keeps its [`Health`].
const FRONT_KEY: &str = "health";

impl Health {
    /// Records a result; true when the status changed. `in_start_period`: the probe
    /// began within the start period, when failures do not count while starting.
    fn record(&mut self, result: ProbeResult, retries: i64, in_start_period: bool) -> bool {
        let before = self.status;
        let passed = result.exit_code == 0;
        if self.log.len() >= KEPT_RESULTS {
            self.log.pop_front();
        }
        self.log.push_back(result);
        if passed {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else if !(self.status == HealthStatus::Starting && in_start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        before != self.status
    }

    pub fn to_json(&self) -> Value {
        let log: Vec<Value> = self
            .log
            .iter()
            .map(|r| json!({"Start": super::logs::format_time(r.start), "End": super::logs::format_time(r.end), "ExitCode": r.exit_code, "Output": r.output}))
            .collect();
        json!({"Status": self.status.as_str(), "FailingStreak": self.failing_streak, "Log": log})
    }
}

/// The checkers of the running containers and the health of every container that
/// has had one (by Docker id).
#[derive(Default)]
pub struct HealthBoard {
    states: Mutex<HashMap<String, Health>>,
    checkers: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl HealthBoard {
    pub fn status(&self, id: &str) -> Option<Health> {
        self.states.lock().ok()?.get(id).cloned()
    }

    /// Stops the container's checker; its health turns `unhealthy`, as dockerd's does.
    pub fn stop(&self, id: &str) {
        let stopped = self.checkers.lock().ok().and_then(|mut c| c.remove(id));
        if let Some(stop) = stopped {
            let _ = stop.send(true);
            if let Ok(mut states) = self.states.lock() {
                if let Some(health) = states.get_mut(id) {
                    health.status = HealthStatus::Unhealthy;
                }
            }
        }
    }

    /// Forgets a removed container.
    pub fn forget(&self, id: &str) {
        self.stop(id);
        if let Ok(mut states) = self.states.lock() {
            states.remove(id);
        }
    }

    /// Applies a result while the container's checker runs (a stop that came first
    /// wins); the new health when its status changed.
    fn update(&self, id: &str, change: impl FnOnce(&mut Health) -> bool) -> Option<Health> {
        if !self.checkers.lock().ok()?.contains_key(id) {
            return None;
        }
        let mut states = self.states.lock().ok()?;
        let health = states.entry(id.to_string()).or_default();
        change(health).then(|| health.clone())
    }
}

/// `State.Health` of a container with a healthcheck (None without one).
pub fn inspect_json(docker: &super::Docker, record: &ContainerRecord) -> Option<Value> {
    HealthConfig::of_config(&Front::of(record).config)?;
    let health = docker.health.status(docker_id(record)).unwrap_or_else(|| {
        let status = if record.state == ContainerState::Running { HealthStatus::Starting } else { HealthStatus::Unhealthy };
        Health { status, ..Health::default() }
    });
    Some(health.to_json())
}

/// What `docker ps` adds to "Up 5 minutes": `(healthy)`, `(health: starting)`.
pub fn status_suffix(docker: &super::Docker, record: &ContainerRecord) -> String {
    match inspect_json(docker, record).and_then(|h| h["Status"].as_str().map(str::to_string)) {
        Some(status) if status == "starting" => " (health: starting)".into(),
        Some(status) => format!(" ({status})"),
        None => String::new(),
    }
}

/// The status word the `health` filter of `/containers/json` matches (`none` without
/// a healthcheck).
pub fn filter_word(docker: &super::Docker, record: &ContainerRecord) -> String {
    inspect_json(docker, record).and_then(|h| h["Status"].as_str().map(str::to_string)).unwrap_or_else(|| "none".into())
}

/// Starts the checker of a container that just started: `starting` again, no streak,
/// the log kept (as dockerd's), written to its record.
pub fn start_checker(docker: &super::State, record: &ContainerRecord) {
    let Some(config) = HealthConfig::of_config(&Front::of(record).config) else { return };
    if let Ok(mut states) = docker.health.states.lock() {
        let health = states.entry(docker_id(record).to_string()).or_default();
        health.status = HealthStatus::Starting;
        health.failing_streak = 0;
    }
    spawn_persist(docker, record);
    spawn_checker(docker, record, config);
}

/// Stops the checker of a container that stopped and writes its `unhealthy` down.
pub fn stop_checker(docker: &super::State, record: &ContainerRecord) {
    docker.health.stop(docker_id(record));
    spawn_persist(docker, record);
}

fn spawn_checker(docker: &super::State, record: &ContainerRecord, config: HealthConfig) {
    let (stop, stopped) = watch::channel(false);
    if let Ok(mut checkers) = docker.health.checkers.lock() {
        if let Some(previous) = checkers.insert(docker_id(record).to_string(), stop) {
            let _ = previous.send(true);
        }
    }
    tokio::spawn(run_checker(docker.clone(), record.clone(), config, stopped));
}

/// Probes until the stop signal: at the start interval while starting in the start
/// period, at the interval otherwise. Each result is written to the record.
async fn run_checker(docker: super::State, record: ContainerRecord, config: HealthConfig, mut stopped: watch::Receiver<bool>) {
    let id = docker_id(&record).to_string();
    let started = if record.started_at > 0 { record.started_at } else { now_nanos() };
    let in_start_period = |at: i64| Duration::from_nanos((at - started).max(0) as u64) < config.start_period();
    loop {
        let starting = docker.health.status(&id).is_none_or(|h| h.status == HealthStatus::Starting);
        let wait = if starting && in_start_period(now_nanos()) { config.start_interval() } else { config.interval() };
        let result = tokio::select! {
            _ = stopped.changed() => return,
            result = async { tokio::time::sleep(wait).await; probe(&docker, &record, &config).await } => result,
        };
        if *stopped.borrow() {
            return;
        }
        let early = in_start_period(result.start);
        let changed = docker.health.update(&id, |health| health.record(result, config.retries(), early));
        persist(&docker, &record).await;
        if let Some(health) = changed {
            let attributes = json!({"name": record.spec.name, "image": record.spec.image});
            docker.publish_with("container", &format!("health_status: {}", health.status.as_str()), &id, attributes, &record.spec.labels, &record.spec.image);
        }
    }
}

fn spawn_persist(docker: &super::State, record: &ContainerRecord) {
    let (docker, record) = (docker.clone(), record.clone());
    tokio::spawn(async move { persist(&docker, &record).await });
}

/// Writes the container's health, as the board has it, into its record. The board is
/// read inside the write, so whichever of two writers comes last writes the newest state.
async fn persist(docker: &super::Docker, record: &ContainerRecord) {
    let id = docker_id(record);
    if docker.health.status(id).is_none() {
        return;
    }
    let written = docker.core.update_front(NAMESPACE, &record.id, |front| {
        let health = docker.health.status(id).and_then(|health| serde_json::to_value(health).ok());
        if let (Some(front), Some(health)) = (front.as_object_mut(), health) {
            front.insert(FRONT_KEY.into(), health);
        }
    });
    if let Err(error) = written.await {
        tracing::debug!(container = %id, %error, "writing the health state");
    }
}

/// The health state kept in a container record's `front`.
fn stored(front: &Value) -> Option<Health> {
    serde_json::from_value(front.get(FRONT_KEY)?.clone()).ok()
}

/// Runs the probe once, killed at the timeout.
async fn probe(docker: &super::Docker, record: &ContainerRecord, config: &HealthConfig) -> ProbeResult {
    let start = now_nanos();
    let command = config.command().unwrap_or_default();
    let outcome = docker.core.exec_sync(NAMESPACE, &record.id, &command, config.timeout()).await;
    let (exit_code, output) = match outcome {
        Ok(output) => {
            let mut bytes = output.stdout;
            bytes.extend_from_slice(&output.stderr);
            (output.exit_code, truncated(&bytes))
        }
        Err(CoreError::DeadlineExceeded(_)) => (-1, format!("Health check exceeded timeout ({})", go_duration(config.timeout()))),
        Err(error) => (-1, error.to_string()),
    };
    ProbeResult { start, end: now_nanos(), exit_code, output }
}

/// The first 4096 bytes, with `...` when there was more.
fn truncated(bytes: &[u8]) -> String {
    if bytes.len() <= KEPT_OUTPUT {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    format!("{}...", String::from_utf8_lossy(&bytes[..KEPT_OUTPUT]))
}

/// A duration as Go prints one (`500ms`, `2s`, `1.5s`, `1m30s`).
fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos as f64 / 1e6));
    }
    let total = duration.as_secs();
    let seconds = trim_fraction((total % 60) as f64 + f64::from(duration.subsec_nanos()) / 1e9);
    match (total / 3600, total / 60 % 60) {
        (0, 0) => format!("{seconds}s"),
        (0, minutes) => format!("{minutes}m{seconds}s"),
        (hours, minutes) => format!("{hours}h{minutes}m{seconds}s"),
    }
}

fn trim_fraction(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// At berthd's start: every container's health back from its record, and the checkers
/// of the containers that kept running, carrying on from where they were. A container
/// that stopped meanwhile has no checker, so it is `unhealthy`, as after a stop.
pub fn resume(docker: &super::State) {
    let Ok(records) = super::containers::docker_containers(&docker.core) else { return };
    for record in records {
        let Some(config) = HealthConfig::of_config(&Front::of(&record).config) else { continue };
        let running = record.state == ContainerState::Running;
        if let Some(mut health) = stored(&record.spec.front) {
            if !running {
                health.status = HealthStatus::Unhealthy;
            }
            if let Ok(mut states) = docker.health.states.lock() {
                states.insert(docker_id(&record).to_string(), health);
            }
        }
        if running {
            spawn_checker(docker, &record, config);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32) -> ProbeResult {
        ProbeResult { start: 0, end: 0, exit_code: code, output: String::new() }
    }

    #[test]
    fn streaks_and_start_period() {
        let mut health = Health::default();
        assert!(!health.record(result(1), 2, true), "a failure in the start period counts while starting");
        assert_eq!(health.failing_streak, 0);
        assert!(!health.record(result(1), 2, false));
        assert!(health.record(result(1), 2, false));
        assert_eq!((health.status, health.failing_streak), (HealthStatus::Unhealthy, 2));
        assert!(health.record(result(0), 2, false));
        assert_eq!((health.status, health.failing_streak), (HealthStatus::Healthy, 0));
        for _ in 0..6 {
            health.record(result(0), 2, false);
        }
        assert_eq!(health.log.len(), KEPT_RESULTS);
    }

    #[test]
    fn kept_state_reads_back() {
        let mut health = Health::default();
        health.record(ProbeResult { start: 1, end: 2, exit_code: 1, output: "no".into() }, 1, false);
        let written = serde_json::to_value(&health).unwrap();
        assert_eq!(written["status"], "unhealthy");
        assert_eq!(stored(&json!({ "name": "c", FRONT_KEY: written })), Some(health));
    }

    #[test]
    fn commands_and_merging() {
        let config = |test: &[&str]| HealthConfig { test: test.iter().map(|s| s.to_string()).collect(), ..HealthConfig::default() };
        assert_eq!(config(&["CMD-SHELL", "test -f /x"]).command().unwrap(), vec!["/bin/sh", "-c", "test -f /x"]);
        assert_eq!(config(&["CMD", "true"]).command().unwrap(), vec!["true"]);
        assert!(config(&["NONE"]).command().is_none());
        let image = HealthConfig { interval: 5, retries: 7, ..config(&["CMD", "true"]) };
        let merged = HealthConfig::merged(Some(HealthConfig { interval: 9, ..HealthConfig::default() }), Some(image)).unwrap();
        assert_eq!((merged.test[1].as_str(), merged.interval, merged.retries), ("true", 9, 7));
        assert!(HealthConfig { interval: 10, ..HealthConfig::default() }.validate().is_err());
        let from_docker_py: HealthConfig = serde_json::from_str(r#"{"Test":["CMD","true"],"Interval":1000000000,"Timeout":null,"StartPeriod":null}"#).unwrap();
        assert_eq!((from_docker_py.interval, from_docker_py.timeout), (1_000_000_000, 0));
    }

    #[test]
    fn output_and_durations() {
        assert_eq!(truncated(&[b'a'; 5000]).len(), KEPT_OUTPUT + 3);
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
    }
}
