//! The shim is its containers' child subreaper: on SIGCHLD it reaps every exited
//! child, so none is left a zombie, and hands known pids' exits to the task service.

use std::sync::Arc;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::task::Shim;

/// Makes this process the subreaper of its descendants.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// Every exited child as (pid, status), the status 128 + signal for a killed one.
pub fn reap_all() -> Vec<(i32, u32)> {
    let mut exits = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => exits.push((pid.as_raw(), code as u32)),
            Ok(WaitStatus::Signaled(pid, signal, _)) => exits.push((pid.as_raw(), 128 + signal as u32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return exits,
            Ok(_) => {}
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
        for (pid, status) in reap_all() {
            shim.on_exit(pid, status);
        }
        if children.recv().await.is_none() {
            return;
        }
    }
}
