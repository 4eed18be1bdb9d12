//! A pod's shared PID namespace: the one namespace that needs a process to exist.
//! `berth-pod-init` creates it and leaves its init running (what a pause container is
//! elsewhere); the namespace is pinned by a bind mount like the pod's others, and the
//! init is told apart from a later process with the same pid by its namespace inode.
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::pin;
use super::CoreError;

const STOP_POLLS: u32 = 200;
const STOP_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// The pod's PID namespace, as recorded with the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodInit {
    /// The init's pid in the host's PID namespace.
    pub pid: u32,
    /// The bind mount that pins the namespace (what containers join).
    pub pinned: String,
}

/// Starts the pod's init with `root` as its empty root and pins its namespace on
/// `pinned`. On error nothing is left running or mounted.
pub async fn start(binary: &Path, root: &Path, pinned: &Path, userns: Option<&Path>) -> Result<PodInit, CoreError> {
    std::fs::create_dir_all(root).map_err(super::io_error(format!("creating {}", root.display())))?;
    let output = tokio::process::Command::new(binary)
        .arg(root)
        .args(userns)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|error| CoreError::Internal(format!("starting {}: {error}", binary.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid = match (output.status.success(), stdout.trim().parse::<u32>()) {
        (true, Ok(pid)) if pid > 1 => pid,
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(CoreError::Internal(format!("starting the pod's init: {}", stderr.trim())));
        }
    };
    let init = PodInit { pid, pinned: pinned.display().to_string() };
    if let Err(error) = pin::bind_namespace_of(pid, "pid", pinned) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        pin::unpin_path(pinned);
        return Err(error.into());
    }
    Ok(init)
}

impl PodInit {
    /// Whether the init still runs (its pid still names the pinned namespace's init).
    pub fn is_alive(&self) -> bool {
        let live = std::fs::metadata(format!("/proc/{}/ns/pid", self.pid));
        let pinned = std::fs::metadata(&self.pinned);
        match (live, pinned) {
            (Ok(live), Ok(pinned)) => live.ino() == pinned.ino() && live.dev() == pinned.dev() && !is_zombie(self.pid),
            _ => false,
        }
    }

    /// Ends the namespace (and every process left in it) and waits, a little, for the
    /// kernel to finish the init's exit; idempotent. The wait is on a pidfd opened while
    /// the pid was still the init's (checked again once it is open), so a pod's removal
    /// costs no polling; without pidfds it polls.
    pub async fn stop(&self) {
        if !self.is_alive() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let watched = crate::task::ProcessExit::watch(self.pid).ok().filter(|_| self.is_alive());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        if let Some(exit) = watched {
            if !exit.wait(STOP_POLL_INTERVAL * STOP_POLLS).await {
                tracing::warn!(pid = self.pid, "the pod's init has not exited after SIGKILL");
            }
            return;
        }
        for _ in 0..STOP_POLLS {
            if !self.is_alive() {
                return;
            }
            tokio::time::sleep(STOP_POLL_INTERVAL).await;
        }
        tracing::warn!(pid = self.pid, "the pod's init has not exited after SIGKILL");
    }

    /// Stops the init and removes the pin.
    pub async fn release(&self) {
        self.stop().await;
        pin::unpin_path(Path::new(&self.pinned));
    }
}

/// Kills every `berth-pod-init` started with `root` as its root (its first argument):
/// the init of a pod whose creation was cut short before its pid was recorded, and the
/// starter that would have printed it. Waits, a little, for them to go.
pub async fn kill_strays(root: &Path) {
    let strays = processes_with_first_argument(root);
    for pid in &strays {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    for _ in 0..STOP_POLLS {
        if strays.iter().all(|pid| is_zombie(*pid)) {
            return;
        }
        tokio::time::sleep(STOP_POLL_INTERVAL).await;
    }
}

fn processes_with_first_argument(argument: &Path) -> Vec<u32> {
    let wanted = argument.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let mut arguments = cmdline.split(|byte| *byte == 0);
        let program = arguments.next().unwrap_or_default();
        let is_pod_init = program.ends_with(b"berth-pod-init") || program.starts_with(b"/proc/");
        if is_pod_init && arguments.next() == Some(wanted) {
            found.push(pid);
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}
