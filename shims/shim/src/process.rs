//! One supervised process (a container's init or an exec'd process): its pid, stdio
//! paths, terminal, and its exit, which is recorded to the state directory before
//! anyone is told about it.

use std::path::Path;
use std::sync::Arc;

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use containerd_shim_protos::types::task::Status;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch, Notify};

/// An exit status (128 + signal for a killed process) and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at_nanos: u128,
}

/// The stdio containerd asked for.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the IO tasks of a process share with RPCs: the pty master for ResizePty, a
/// way to close stdin for CloseIO, and a channel that closes when all output is copied.
#[derive(Default)]
pub struct ProcIo {
    pub console: Arc<Mutex<Option<Arc<AsyncFd<OwnedFd>>>>>,
    pub close_stdin: Option<Arc<Notify>>,
    pub output_done: Option<mpsc::Receiver<()>>,
}

pub struct Proc {
    /// Empty for the container's init.
    pub exec_id: String,
    pub pid: i32,
    pub stdio: StdioPaths,
    /// An exec'd process's spec, kept from Exec until Start.
    pub spec: Option<oci_spec::runtime::Process>,
    pub started: bool,
    /// Set by the reaper under the shim's lock, in the same critical section as the
    /// `waitpid` that freed the pid: from then on the pid may name another process and
    /// is never signalled again. The exit is published later, once output is copied.
    pub reaped: Option<Exit>,
    pub exit: watch::Sender<Option<Exit>>,
    pub io: ProcIo,
}

impl Proc {
    pub fn new(exec_id: &str, stdio: StdioPaths) -> Proc {
        Proc { exec_id: exec_id.to_string(), pid: 0, stdio, spec: None, started: false, reaped: None, exit: watch::channel(None).0, io: ProcIo::default() }
    }

    pub fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// The exit as soon as the process is reaped, before it is published.
    pub fn finished(&self) -> Option<Exit> {
        self.reaped.or_else(|| self.exited())
    }

    /// The task status, `paused` telling whether the container is frozen.
    pub fn status(&self, paused: bool) -> Status {
        if self.exited().is_some() {
            Status::STOPPED
        } else if !self.started {
            Status::CREATED
        } else if paused {
            Status::PAUSED
        } else {
            Status::RUNNING
        }
    }

    pub fn name(&self) -> &str {
        if self.exec_id.is_empty() { "init" } else { &self.exec_id }
    }
}

/// Where a process's exit is recorded in the container's shim directory.
pub fn exit_file(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("exit-{name}"))
}

/// Records an exit as `<status> <nanoseconds since the epoch>`, durably.
pub fn record_exit(dir: &Path, name: &str, exit: Exit) -> std::io::Result<()> {
    let path = exit_file(dir, name);
    let temporary = dir.join(format!(".exit-{name}.tmp"));
    berth_runtime::private_fs::write_private_file(&temporary, format!("{} {}\n", exit.status, exit.at_nanos).as_bytes())?;
    std::fs::rename(&temporary, path)
}

pub fn read_exit(dir: &Path, name: &str) -> Option<Exit> {
    let text = std::fs::read_to_string(exit_file(dir, name)).ok()?;
    let (status, at) = text.trim().split_once(' ')?;
    Some(Exit { status: status.parse().ok()?, at_nanos: at.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_round_trip() {
        let dir = std::env::temp_dir().join(format!("berth-shim-exit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exit = Exit { status: 137, at_nanos: 1_700_000_000_123_456_789 };
        record_exit(&dir, "init", exit).unwrap();
        assert_eq!(read_exit(&dir, "init"), Some(exit));
        assert_eq!(read_exit(&dir, "other"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
