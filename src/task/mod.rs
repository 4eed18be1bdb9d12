//! Shims: berthd starts one `berth-shim` per pod (containers of a pod share it, as the
//! sandbox annotation groups them), talks the containerd Task API to it over ttrpc, and
//! cleans up after shims that died. The daemon never owns a container process.
pub mod events;
mod process_exit;

pub use process_exit::ProcessExit;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::shim_async::TaskClient;
use protobuf::Message;
use tokio::sync::{mpsc, Mutex};

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

    /// Whether the call failed because the shim's connection is gone (the shim died).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            TaskError::Connect { .. } => true,
            TaskError::Rpc(error) => connection_lost(error),
            TaskError::Launch { .. } => false,
        }
    }
}

/// Whether a ttrpc error means the connection closed, not that the shim refused.
pub fn connection_lost(error: &ttrpc::Error) -> bool {
    match error {
        ttrpc::Error::RemoteClosed | ttrpc::Error::LocalClosed | ttrpc::Error::Eof | ttrpc::Error::Socket(_) => true,
        ttrpc::Error::Others(message) => message.contains("channel closed") || message.contains("Broken pipe"),
        _ => false,
    }
}

/// A ttrpc context with the default deadline.
pub fn context() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(REQUEST_TIMEOUT.as_nanos() as i64)
}

/// One cached connection; `generation` tells a later connection to the same address
/// apart from it.
struct Connection {
    client: TaskClient,
    generation: u64,
}

/// Starts shims and keeps one connection per shim address. When a connection closes
/// (the shim exited or was killed), it is dropped and its address is reported on the
/// channel that [`ShimManager::lost_shims`] hands out.
pub struct ShimManager {
    binary: PathBuf,
    shim_root: PathBuf,
    namespace: String,
    daemon_address: String,
    events_address: String,
    clients: Arc<Mutex<HashMap<String, Connection>>>,
    generations: AtomicU64,
    lost_sender: mpsc::UnboundedSender<String>,
    lost_receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Held while the containers of a dead shim are cleaned up, one at a time.
    pub reaping: Mutex<()>,
}

impl ShimManager {
    pub fn new(binary: PathBuf, shim_root: PathBuf, namespace: &str, daemon_address: &str, events_address: &str) -> Self {
        let (lost_sender, lost_receiver) = mpsc::unbounded_channel();
        ShimManager {
            binary,
            shim_root,
            namespace: namespace.to_string(),
            daemon_address: daemon_address.to_string(),
            events_address: events_address.to_string(),
            clients: Arc::new(Mutex::new(HashMap::new())),
            generations: AtomicU64::new(0),
            lost_sender,
            lost_receiver: std::sync::Mutex::new(Some(lost_receiver)),
            reaping: Mutex::new(()),
        }
    }

    /// Whether the shim binary can be run, or why not.
    pub fn check_binary(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let found = match self.binary.components().count() {
            1 => std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(&self.binary)).find(|p| p.is_file())),
            _ => Some(self.binary.clone()),
        };
        let metadata = found.as_ref().and_then(|path| std::fs::metadata(path).ok());
        match metadata {
            Some(metadata) if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 => Ok(()),
            _ => Err(format!("the shim binary {} is missing or not executable", self.binary.display())),
        }
    }

    /// The addresses of shims whose connection closed (handed out once).
    pub fn lost_shims(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.lost_receiver.lock().ok().and_then(|mut receiver| receiver.take())
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
        if let Some(connection) = clients.get(address) {
            return Ok(connection.client.clone());
        }
        let path = address.trim_start_matches("unix://");
        let connect_error = |source| TaskError::Connect { address: address.to_string(), source };
        let stream = tokio::net::UnixStream::connect(path).await.map_err(connect_error)?;
        let watched = stream.as_fd().try_clone_to_owned().map_err(connect_error)?;
        let client = TaskClient::new(ttrpc::asynchronous::Client::new(stream.into()));
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        clients.insert(address.to_string(), Connection { client: client.clone(), generation });
        self.watch(address.to_string(), generation, watched);
        Ok(client)
    }

    /// Waits (on the event loop, reading nothing) until the peer of `socket` hangs up,
    /// then drops the connection if it is still the cached one and reports the address.
    fn watch(&self, address: String, generation: u64, socket: std::os::fd::OwnedFd) {
        let clients = self.clients.clone();
        let lost = self.lost_sender.clone();
        tokio::spawn(async move {
            if let Err(error) = wait_for_hang_up(socket).await {
                tracing::warn!(%address, %error, "watching a shim connection");
                return;
            }
            let mut clients = clients.lock().await;
            if clients.get(&address).is_some_and(|connection| connection.generation == generation) {
                clients.remove(&address);
            }
            drop(clients);
            tracing::info!(%address, "a shim connection closed");
            let _ = lost.send(address);
        });
    }

    /// Drops a cached connection (after the shim exited or stopped answering).
    pub async fn forget(&self, address: &str) {
        self.clients.lock().await.remove(address);
    }
}

/// Returns when the peer closed the socket. Readiness wakes it at each message the
/// ttrpc reader consumes (edge-triggered), which costs one poll per message.
async fn wait_for_hang_up(socket: std::os::fd::OwnedFd) -> std::io::Result<()> {
    // SAFETY: `socket` is an owned, open descriptor that the AsyncFd owns until it is
    // dropped, and as_raw_fd returns that descriptor.
    let socket = unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE) }.map_err(std::io::Error::from)?;
    loop {
        let mut guard = socket.readable().await?;
        if guard.ready().is_read_closed() {
            return Ok(());
        }
        guard.clear_ready();
    }
}
