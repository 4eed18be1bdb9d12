//! Waiting in the foreground for a process the runtime started (`run`, `exec` without
//! `--detach`): signals sent to the runtime are forwarded to it, and its exit status
//! becomes the runtime's exit code (128 + signal when it was killed).

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::RuntimeError;

/// Waits for `pid`. Every signal must already be blocked in the calling thread, from
/// before `pid` was created, so its exit cannot be missed. `on_resize` runs on SIGWINCH.
pub fn wait_forwarding_signals(pid: i32, on_resize: &dyn Fn()) -> Result<i32, RuntimeError> {
    let all = SigSet::all();
    loop {
        if let Some(code) = reap(pid)? {
            return Ok(code);
        }
        let signal = all.wait().map_err(|e| RuntimeError::system("sigwait", e))?;
        match signal {
            Signal::SIGWINCH => on_resize(),
            Signal::SIGCHLD | Signal::SIGURG => {}
            other => {
                let _ = kill(Pid::from_raw(pid), other);
            }
        }
    }
}

/// Reaps every exited child; returns the exit code once `pid` is among them.
fn reap(pid: i32) -> Result<Option<i32>, RuntimeError> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => return Ok(Some(128 + signal as i32)),
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(RuntimeError::system("waitpid", e)),
        }
    }
}
