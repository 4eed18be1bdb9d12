//! Shims: berthd starts one `berth-shim` per pod (containers of a pod share it, as the
//! sandbox annotation groups them), talks the containerd Task API to it over ttrpc, and
//! cleans up after shims that died. The daemon never owns a container process.
pub mod events;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::shim_async::TaskClient;
use protobuf::Message;
use tokio::sync::Mutex;

/// The annotation that groups a pod's containers into one shim.
pub const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// How long one shim request may take before the daemon gives up on it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("starting the shim {binary}: {message}")]
    Launch { binary: String, message: String },
    #[error("connecting to the shim at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shim: {0}")]
    Rpc(#[from] ttrpc::Error),
}

impl TaskError {
    /// Whether the shim answered that the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TaskError::Rpc(ttrpc::Error::RpcStatus(status)) if status.code() == ttrpc::Code::NOT_FOUND)
    }
}

/// A ttrpc context with the default deadline.
pub fn context() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(REQUEST_TIMEOUT.as_nanos() as i64)
}

/// Starts shims and keeps one connection per shim address.
pub struct ShimManager {
    binary: PathBuf,
    shim_root: PathBuf,
    namespace: String,
    daemon_address: String,
    events_address: String,
    clients: Mutex<HashMap<String, TaskClient>>,
}

impl ShimManager {
    pub fn new(binary: PathBuf, shim_root: PathBuf, namespace: &str, daemon_address: &str, events_address: &str) -> Self {
        ShimManager {
            binary,
            shim_root,
            namespace: namespace.to_string(),
            daemon_address: daemon_address.to_string(),
            events_address: events_address.to_string(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn command(&self, id: &str, bundle: &Path, action: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(["-namespace", &self.namespace, "-address", &self.daemon_address])
            .args(["-publish-binary", "/bin/false", "-id", id])
            .arg("-bundle")
            .arg(bundle)
            .arg(action)
            .current_dir(bundle)
            .env("BERTH_SHIM_ROOT", &self.shim_root)
            .env("TTRPC_ADDRESS", &self.events_address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn launch_error(&self, message: String) -> TaskError {
        TaskError::Launch {
            binary: self.binary.display().to_string(),
            message,
        }
    }

    /// Runs `berth-shim start` for the container `id` in `bundle` (whose config.json
    /// is written): returns the address of the shim serving its pod.
    pub async fn start_shim(&self, id: &str, bundle: &Path) -> Result<String, TaskError> {
        let output = self
            .command(id, bundle, "start")
            .output()
            .await
            .map_err(|error| self.launch_error(error.to_string()))?;
        if !output.status.success() {
            return Err(self.launch_error(String::from_utf8_lossy(&output.stderr).trim().to_string()));
        }
        let address = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if address.is_empty() {
            return Err(self.launch_error("it printed no address".into()));
        }
        Ok(address)
    }

    /// Runs `berth-shim delete` for a container whose shim is gone: it kills and
    /// deletes what is left and reports the exit it recorded.
    pub async fn delete_dead(&self, id: &str, bundle: &Path) -> Result<DeleteResponse, TaskError> {
        let output = self
            .command(id, bundle, "delete")
            .output()
            .await
            .map_err(|error| self.launch_error(error.to_string()))?;
        if !output.status.success() {
            return Err(self.launch_error(String::from_utf8_lossy(&output.stderr).trim().to_string()));
        }
        DeleteResponse::parse_from_bytes(&output.stdout).map_err(|error| self.launch_error(error.to_string()))
    }

    /// The Task client of the shim at `address`, connecting on first use.
    pub async fn client(&self, address: &str) -> Result<TaskClient, TaskError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let path = address.trim_start_matches("unix://");
        let stream = tokio::net::UnixStream::connect(path).await.map_err(|source| TaskError::Connect {
            address: address.to_string(),
            source,
        })?;
        let client = TaskClient::new(ttrpc::asynchronous::Client::new(stream.into()));
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }

    /// Drops a cached connection (after the shim exited or stopped answering).
    pub async fn forget(&self, address: &str) {
        self.clients.lock().await.remove(address);
    }
}
