//! Container operations on one `--root`: create, start, state, kill, delete, list,
//! pause, resume, update, pids and exec. The CLI and the shim both call these.

mod create;
mod exec;
mod lifecycle;
mod overlap;

use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow};

use crate::error::RuntimeError;
use crate::state::{ContainerRecord, StateRoot, Status};

pub use create::CreateOptions;
pub use exec::ExecOptions;

/// The runtime over one state directory (runc's `--root`).
pub struct Runtime {
    state: StateRoot,
}

impl Runtime {
    pub fn new(root: &Path) -> Self {
        Runtime { state: StateRoot::new(root) }
    }

    pub fn root(&self) -> &Path {
        self.state.path()
    }

    pub fn load(&self, id: &str) -> Result<(ContainerRecord, Status), RuntimeError> {
        let record = self.state.load(id)?;
        let status = record.status(&self.state.container_dir(id));
        Ok((record, status))
    }

    /// Runs hooks of one kind with the container's state on their stdin.
    fn run_hooks(&self, kind: &'static str, record: &ContainerRecord, status: Status) -> Result<String, RuntimeError> {
        let state = serde_json::to_string(&record.oci_state(status))
            .map_err(|e| RuntimeError::Invalid(format!("encoding the state: {e}")))?;
        let hooks = record.spec.hooks().as_ref();
        let list = hooks.and_then(|h| match kind {
            "prestart" => h.prestart().as_ref(),
            "createRuntime" => h.create_runtime().as_ref(),
            "poststart" => h.poststart().as_ref(),
            "poststop" => h.poststop().as_ref(),
            _ => None,
        });
        crate::hooks::run_hooks(kind, list, state.as_bytes())?;
        Ok(state)
    }
}

/// Blocks every signal, returning the previous mask, so that a child's exit cannot be
/// missed and setup is not interrupted half-way.
pub fn block_signals() -> Result<SigSet, RuntimeError> {
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut previous))
        .map_err(|e| RuntimeError::system("sigprocmask", e))?;
    Ok(previous)
}

pub fn restore_signals(mask: &SigSet) {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
}

/// Writes a pid file the way runc does: to a temporary name, then renamed.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), RuntimeError> {
    let path = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
    crate::state::write_atomically(&path, pid.to_string().as_bytes()).map_err(RuntimeError::from)
}
