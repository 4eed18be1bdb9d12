//! The shim is its containers' child subreaper: on SIGCHLD it reaps every exited
//! child, so none is left a zombie, and hands known pids' exits to the task service.
//! Reaping happens with the shim's container lock held (see [`Shim::reap`]), and every
//! signal to a container's process is sent with that lock held, so no signal can reach
//! a pid after the reaper freed it for reuse.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::task::Shim;

/// Makes this process the subreaper of its descendants.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// The external runtime's processes in flight, which [`reap_all`] must not take.
static RUNTIME_CHILDREN: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn runtime_children() -> MutexGuard<'static, BTreeSet<i32>> {
    RUNTIME_CHILDREN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spawns an external runtime's process, which the caller waits for (with
/// [`runtime_waited`] after the wait).
pub fn spawn_runtime(command: &mut Command) -> std::io::Result<Child> {
    let mut children = runtime_children();
    let child = command.spawn()?;
    children.insert(child.id() as i32);
    Ok(child)
}

/// After the caller reaped `pid`: exits that queued behind it are reaped now.
pub fn runtime_waited(pid: i32) {
    runtime_children().remove(&pid);
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGCHLD);
}

/// Every exited child as (pid, status), the status 128 + signal for a killed one. An
/// external runtime's process is left to its waiter (and so are the exits behind it,
/// until that waiter's [`runtime_waited`]).
pub fn reap_all() -> Vec<(i32, u32)> {
    let children = runtime_children();
    let mut exits = Vec::new();
    loop {
        let peek = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT);
        let Some(pid) = peek.ok().and_then(|status| status.pid()) else { return exits };
        if children.contains(&pid.as_raw()) {
            return exits;
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => exits.push((pid.as_raw(), code as u32)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => exits.push((pid.as_raw(), 128 + signal as u32)),
            Ok(_) => {}
            Err(_) => return exits,
        }
    }
}

/// Starts listening for SIGCHLD; do it before the first child is created.
pub fn watch() -> std::io::Result<Signal> {
    signal(SignalKind::child())
}

/// Reaps on every SIGCHLD until the process ends.
pub async fn run(shim: Arc<Shim>, mut children: Signal) {
    loop {
        shim.reap();
        if children.recv().await.is_none() {
            return;
        }
    }
}
