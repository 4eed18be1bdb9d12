//! Running one CNI plugin (spec 1.0): find its binary in the configured directories,
//! pass the command and the sandbox in the environment and the network configuration
//! on stdin, read the result (or the error object) from stdout.
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::error::{NetworkError, Result};

/// What a plugin is run for.
pub(crate) struct Invocation<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub bin_dirs: &'a [PathBuf],
    pub timeout_seconds: u64,
}

pub(crate) fn find_plugin(kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        return Err(NetworkError::Plugin { plugin: kind.into(), message: "invalid plugin type".into() });
    }
    bin_dirs.iter().map(|dir| dir.join(kind)).find(|path| path.is_file()).ok_or_else(|| NetworkError::Plugin {
        plugin: kind.into(),
        message: format!("not found in {}", join_paths(bin_dirs)),
    })
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
}

/// Runs the plugin named by `config["type"]` with `config` on stdin; returns its
/// parsed stdout (Null when it printed nothing, as DEL and CHECK may).
pub(crate) async fn run(invocation: &Invocation<'_>, config: &Value) -> Result<Value> {
    let kind = config["type"].as_str().unwrap_or_default().to_string();
    let binary = find_plugin(&kind, invocation.bin_dirs)?;
    let plugin_error = |message: String| NetworkError::Plugin { plugin: kind.clone(), message };
    let mut child = tokio::process::Command::new(&binary)
        .env_clear()
        .env("CNI_COMMAND", invocation.command)
        .env("CNI_CONTAINERID", invocation.container_id)
        .env("CNI_NETNS", invocation.netns)
        .env("CNI_IFNAME", invocation.ifname)
        .env("CNI_PATH", join_paths(invocation.bin_dirs))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| plugin_error(format!("cannot run {}: {e}", binary.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        let input = serde_json::to_vec(config).map_err(|e| plugin_error(e.to_string()))?;
        stdin.write_all(&input).await.map_err(|e| plugin_error(format!("stdin: {e}")))?;
    }
    // A plugin that hangs is killed (kill_on_drop) when its deadline passes.
    let deadline = std::time::Duration::from_secs(invocation.timeout_seconds.max(1));
    let output = tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .map_err(|_| plugin_error(format!("{} did not finish within {deadline:?} and was killed", invocation.command)))?
        .map_err(|e| plugin_error(format!("wait: {e}")))?;
    let stdout: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if output.status.success() {
        return Ok(stdout);
    }
    Err(plugin_error(describe_failure(invocation.command, &stdout, &output.stderr)))
}

/// The spec's error object `{code, msg, details}`, or stderr when there is none.
fn describe_failure(command: &str, stdout: &Value, stderr: &[u8]) -> String {
    match stdout["msg"].as_str() {
        Some(msg) => {
            let details = stdout["details"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{command} failed with code {}: {msg}{details}", stdout["code"])
        }
        None => format!("{command} failed: {}", String::from_utf8_lossy(stderr).trim()),
    }
}
