//! OCI hooks: each runs as its own process with the container's state on stdin, its
//! own args and env, and an optional timeout after which it is killed.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HookError {
    #[error("{kind} hook {path}: {source}")]
    Spawn { kind: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{kind} hook {path} timed out after {seconds}s")]
    Timeout { kind: &'static str, path: PathBuf, seconds: i64 },
    #[error("{kind} hook {path} failed ({status}): {stderr}")]
    Failed { kind: &'static str, path: PathBuf, status: std::process::ExitStatus, stderr: String },
}

/// Runs every hook of one kind in order, stopping at the first failure.
pub fn run_hooks(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<(), HookError> {
    for hook in hooks.into_iter().flatten() {
        run_hook(kind, hook, state_json)?;
    }
    Ok(())
}

fn command_for(hook: &Hook) -> Command {
    let mut command = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some(argv0) = args.first() {
            command.arg0(argv0);
        }
        command.args(args.iter().skip(1));
    }
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn run_hook(kind: &'static str, hook: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let spawn_error = |source| HookError::Spawn { kind, path: path.clone(), source };
    let mut child = command_for(hook).spawn().map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_error)? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            let seconds = hook.timeout().unwrap_or_default();
            return Err(HookError::Timeout { kind, path, seconds });
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    Err(HookError::Failed { kind, path, status, stderr: stderr.trim().to_string() })
}
