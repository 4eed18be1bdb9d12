//! Restart policies (`no`, `on-failure[:N]`, `always`, `unless-stopped`): whether a
//! container that exited starts again, and when (Docker's back-off: 100 ms, doubled at
//! each restart up to one minute, back to 100 ms once a run lasted 10 s); the
//! RestartCount and the manual-stop mark kept in the container's record; and the
//! containers berthd starts again when it starts (after its own restart or a reboot).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::containers::{docker_containers, docker_id, start_record};
use super::create::Front;
use super::error::{DockerError, DockerResult};
use super::NAMESPACE;
use crate::core::records::{ContainerRecord, ContainerState};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const LONGEST_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
const STEADY_RUN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "MaximumRetryCount", default)]
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    fn is_none(&self) -> bool {
        matches!(self.name.as_str(), "" | "no")
    }
}

/// Docker's checks of a create's policy.
pub fn validate(policy: &RestartPolicy, auto_remove: bool) -> DockerResult<()> {
    match policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => return Err(DockerError::bad_request(format!("invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"))),
    }
    if policy.maximum_retry_count < 0 {
        return Err(DockerError::bad_request("invalid restart policy: maximum retry count cannot be negative"));
    }
    if policy.maximum_retry_count > 0 && policy.name != "on-failure" {
        return Err(DockerError::bad_request("invalid restart policy: maximum retry count can only be used with 'on-failure'"));
    }
    if auto_remove && !policy.is_none() {
        return Err(DockerError::bad_request("can't create 'AutoRemove' container with restart policy"));
    }
    Ok(())
}

/// Whether the policy starts the container again after this exit.
fn wants_restart(front: &Front, exit_code: i32) -> bool {
    let policy = &front.restart_policy;
    match policy.name.as_str() {
        "always" | "unless-stopped" => !front.manually_stopped,
        "on-failure" => !front.manually_stopped && exit_code != 0 && (policy.maximum_retry_count == 0 || front.restart_count < policy.maximum_retry_count),
        _ => false,
    }
}

/// Whether the container exited and its policy is about to start it again.
pub fn is_restarting(record: &ContainerRecord) -> bool {
    record.state == ContainerState::Exited && wants_restart(&Front::of(record), record.exit_code)
}

/// Whether berthd starts the container when it starts itself.
fn wants_start_at_boot(front: &Front, record: &ContainerRecord) -> bool {
    match front.restart_policy.name.as_str() {
        "always" => true,
        "unless-stopped" => !front.manually_stopped,
        "on-failure" => !front.manually_stopped && record.exit_code != 0 && record.started_at > 0 && wants_restart(front, record.exit_code),
        _ => false,
    }
}

/// The back-off of each container (by Docker id), in memory (a berthd restart resets
/// it), and the gate that orders a policy's restart against a user's stop or start.
#[derive(Default)]
pub struct Restarts {
    delays: Mutex<HashMap<String, Duration>>,
    /// Held while a restart decides and starts, and while a user's stop or start
    /// marks the container: a stop that returned is never undone by a pending restart.
    gate: tokio::sync::Mutex<()>,
}

impl Restarts {
    fn next_delay(&self, id: &str, ran: Duration) -> Duration {
        let Ok(mut delays) = self.delays.lock() else { return FIRST_DELAY };
        let delay = match delays.get(id) {
            Some(previous) if ran < STEADY_RUN => (*previous * 2).min(LONGEST_DELAY),
            _ => FIRST_DELAY,
        };
        delays.insert(id.to_string(), delay);
        delay
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut delays) = self.delays.lock() {
            delays.remove(id);
        }
    }
}

/// Marks the container as stopped by its user (`stop`, `kill`) or not (`start`).
pub async fn mark_manual_stop(docker: &super::Docker, record: &ContainerRecord, stopped: bool) -> DockerResult<()> {
    let _gate = docker.restarts.gate.lock().await;
    let current = docker.core.container(NAMESPACE, &record.id)?;
    set_manual_stop(docker, &current, stopped).await
}

async fn set_manual_stop(docker: &super::Docker, current: &ContainerRecord, stopped: bool) -> DockerResult<()> {
    if Front::of(current).manually_stopped == stopped {
        return Ok(());
    }
    docker.core.update_front(NAMESPACE, &current.id, |front| front["manually_stopped"] = serde_json::json!(stopped)).await?;
    Ok(())
}

/// A user's stop: under the gate, so that a policy restart is either done (and the
/// caller stops what it started) or never happens. False when there is nothing to stop:
/// the container neither runs nor waits out a restart back-off.
pub async fn stop_by_user(docker: &super::Docker, core_id: &str) -> DockerResult<bool> {
    let _gate = docker.restarts.gate.lock().await;
    let current = docker.core.container(NAMESPACE, core_id)?;
    if current.state != ContainerState::Running && !is_restarting(&current) {
        return Ok(false);
    }
    set_manual_stop(docker, &current, true).await?;
    Ok(true)
}

/// After an exit: starts the container again when its policy says so, after the back-off.
pub fn after_exit(docker: super::State, record: ContainerRecord) {
    let front = Front::of(&record);
    if !wants_restart(&front, record.exit_code) {
        return;
    }
    let ran = Duration::from_nanos((record.finished_at - record.started_at).max(0) as u64);
    let delay = docker.restarts.next_delay(docker_id(&record), ran);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        restart_now(&docker, &record.id).await;
    });
}

async fn restart_now(docker: &super::Docker, core_id: &str) {
    // Whatever happened during the back-off (a start, a stop, a removal) wins.
    let _gate = docker.restarts.gate.lock().await;
    let Ok(record) = docker.core.container(NAMESPACE, core_id) else { return };
    let front = Front::of(&record);
    if record.state == ContainerState::Running || !wants_restart(&front, record.exit_code) {
        return;
    }
    let counted = docker.core.update_front(NAMESPACE, core_id, |front| {
        let count = front["restart_count"].as_i64().unwrap_or(0);
        front["restart_count"] = serde_json::json!(count + 1);
    });
    if let Err(error) = counted.await {
        tracing::warn!(container = %docker_id(&record), %error, "counting a restart");
        return;
    }
    if let Err(error) = start_record(docker, &record).await {
        tracing::warn!(container = %docker_id(&record), error = %error.message, "restarting a container by its policy");
    }
}

/// At berthd's start: starts the containers whose policy brings them back.
pub async fn resume(docker: super::State) {
    let Ok(records) = docker_containers(&docker.core) else { return };
    for record in records.into_iter().filter(|r| r.state != ContainerState::Running) {
        if wants_start_at_boot(&Front::of(&record), &record) {
            if let Err(error) = start_record(&docker, &record).await {
                tracing::warn!(container = %docker_id(&record), error = %error.message, "starting a container again at berthd's start");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front(name: &str, retries: i64, count: i64, manual: bool) -> Front {
        Front { restart_policy: RestartPolicy { name: name.into(), maximum_retry_count: retries }, restart_count: count, manually_stopped: manual, ..Front::default() }
    }

    #[test]
    fn policies() {
        assert!(!wants_restart(&front("no", 0, 0, false), 1));
        assert!(wants_restart(&front("always", 0, 5, false), 0));
        assert!(!wants_restart(&front("always", 0, 0, true), 0));
        assert!(wants_restart(&front("on-failure", 2, 1, false), 3));
        assert!(!wants_restart(&front("on-failure", 2, 2, false), 3));
        assert!(!wants_restart(&front("on-failure", 0, 0, false), 0));
        assert!(wants_restart(&front("unless-stopped", 0, 0, false), 0));
    }

    #[test]
    fn validation() {
        let policy = |name: &str, retries| RestartPolicy { name: name.into(), maximum_retry_count: retries };
        assert!(validate(&policy("always", 0), false).is_ok());
        assert!(validate(&policy("always", 0), true).is_err());
        assert!(validate(&policy("always", 3), false).is_err());
        assert!(validate(&policy("on-failure", -1), false).is_err());
        assert!(validate(&policy("sometimes", 0), false).is_err());
    }

    #[test]
    fn backoff_doubles_and_resets_after_a_steady_run() {
        let backoff = Restarts::default();
        assert_eq!(backoff.next_delay("c", Duration::ZERO), FIRST_DELAY);
        assert_eq!(backoff.next_delay("c", Duration::ZERO), FIRST_DELAY * 2);
        assert_eq!(backoff.next_delay("c", Duration::ZERO), FIRST_DELAY * 4);
        assert_eq!(backoff.next_delay("c", STEADY_RUN), FIRST_DELAY);
    }
}
