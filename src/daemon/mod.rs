//! berthd's start-up and wiring: configuration, directories, the metadata store, the
//! shim events service, recovery of what ran before, the front-door sockets, and a
//! clean stop on SIGTERM or SIGINT (containers keep running: their shims own them).
pub mod config;
pub mod memory;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::core::{Core, Paths};
use crate::store::Store;
use crate::task::events::{EventsServer, ShimEvent};
use crate::task::ShimManager;
use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the image store: {0}")]
    Images(#[from] crate::image::ImageError),
    #[error("setting up the network: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("recovering containers: {0}")]
    Recover(#[from] crate::core::CoreError),
    #[error("serving the CRI: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamingError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let context = context.into();
    move |source| DaemonError::Io { context, source }
}

fn create_dir(path: &Path, mode: u32) -> Result<(), DaemonError> {
    std::fs::create_dir_all(path).map_err(io(format!("creating {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(format!("chmod {}", path.display())))
}

/// The configured helper binary, else `name` next to berthd's own binary, else the PATH's.
fn helper_binary(configured: Option<&PathBuf>, name: &str) -> PathBuf {
    if let Some(path) = configured {
        return path.clone();
    }
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    match beside {
        Some(path) if path.exists() => path,
        _ => PathBuf::from(name),
    }
}

/// The directories under the root and the state that hold bundles, volumes, shim
/// state, exec FIFOs, pod files and pinned namespaces: 0700 (the snapshotter and the
/// content store make theirs so too). The root and the state stay 0711, for the front
/// doors' sockets.
fn create_private_dirs(config: &Config) -> Result<(), DaemonError> {
    let root = ["containers", "volumes"].map(|name| config.root.join(name));
    let state = ["shims", "sandboxes", "exec", "netns"].map(|name| config.state.join(name));
    for dir in root.iter().chain(&state) {
        crate::private_fs::create_private_dir(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    Ok(())
}

/// Builds the core and recovers what ran before.
pub async fn build_core(config: Config) -> Result<(Arc<Core>, EventsServer, mpsc::UnboundedReceiver<ShimEvent>), DaemonError> {
    create_dir(&config.root, 0o711)?;
    create_dir(&config.state, 0o711)?;
    create_private_dirs(&config)?;
    let store = Store::open(&config.root.join("meta.redb"))?;
    let events_socket = config.state.join("events.sock");
    let (sink, shim_events) = mpsc::unbounded_channel();
    let events_server = EventsServer::start(&events_socket, sink).await.map_err(io("starting the shim events service"))?;
    let shims = ShimManager::new(
        helper_binary(config.shim_binary.as_ref(), "berth-shim"),
        config.state.join("shims"),
        "berth",
        &config.cri_socket.display().to_string(),
        &events_socket.display().to_string(),
    );
    let images = crate::image::ImageService::open(&config.root, store.clone(), config.registry_config())?;
    let network = crate::network::NetworkManager::open(store.clone(), config.network.clone(), &config.state).await?;
    let paths = Paths {
        root: config.root.clone(),
        state: config.state.clone(),
        pod_init_binary: helper_binary(config.pod_init_binary.as_ref(), "berth-pod-init"),
    };
    let core = Arc::new(Core {
        config,
        paths,
        store,
        shims,
        images,
        network,
        events: Default::default(),
        pod_locks: Default::default(),
        handler_features: Default::default(),
    });
    core.recover().await?;
    Ok((core, events_server, shim_events))
}

/// Cleans up after shims whose connection closed while the daemon runs.
pub async fn handle_lost_shims(core: Arc<Core>) {
    let Some(mut lost) = core.shims.lost_shims() else { return };
    while let Some(address) = lost.recv().await {
        let core = core.clone();
        tokio::spawn(async move { core.handle_lost_shim(&address).await });
    }
}

/// Applies what shims report: exits of containers' inits.
pub async fn handle_shim_events(core: Arc<Core>, mut events: mpsc::UnboundedReceiver<ShimEvent>) {
    while let Some(event) = events.recv().await {
        let (container_id, exec_id, exit_status, exited_at_nanos) = match event {
            ShimEvent::Exit { container_id, exec_id, exit_status, exited_at_nanos, .. } => (container_id, exec_id, exit_status, exited_at_nanos),
            // Handled here, in order: the shim sends it just before the init's exit.
            ShimEvent::OutOfMemory { container_id } => {
                for namespace in ["k8s", "docker"] {
                    if let Err(error) = core.mark_out_of_memory(namespace, &container_id).await {
                        tracing::warn!(container = %container_id, %error, "recording an OOM kill");
                    }
                }
                continue;
            }
        };
        if !exec_id.is_empty() {
            continue;
        }
        let core = core.clone();
        tokio::spawn(async move {
            for namespace in ["k8s", "docker"] {
                if core.container(namespace, &container_id).is_ok() {
                    if let Err(error) = core.record_exit(namespace, &container_id, exit_status, exited_at_nanos).await {
                        tracing::warn!(container = %container_id, %error, "recording an exit");
                    }
                }
            }
        });
    }
}

/// Binds a front-door socket: stale file replaced, mode 0660, group as configured.
pub fn bind_socket(path: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io(format!("chmod {}", path.display())))?;
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| DaemonError::Config(config::ConfigError::Invalid(format!("socket_group {group:?} does not exist"))))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| DaemonError::Io { context: format!("chown {}", path.display()), source: e.into() })?;
    }
    Ok(listener)
}

/// How long a stop waits for clients to finish their requests and close their
/// connections (a watch or an events stream never ends by itself).
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping on a signal; containers keep running");
}

/// Runs the daemon until a signal stops it.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let socket = config.cri_socket.clone();
    let docker_socket = config.docker_socket.clone();
    let group = config.socket_group.clone();
    let streaming_config = config.streaming.clone();
    let (core, _events_server, shim_events) = build_core(config).await?;
    tokio::spawn(handle_shim_events(core.clone(), shim_events));
    let streaming = crate::streaming::Streaming::start(&streaming_config, core.clone(), crate::cri::NAMESPACE).await?;
    tokio::spawn(handle_lost_shims(core.clone()));
    tokio::spawn(memory::trim_periodically());
    let listener = bind_socket(&socket, group.as_deref())?;
    let docker_listener = bind_socket(&docker_socket, group.as_deref())?;
    tracing::info!(socket = %socket.display(), docker_socket = %docker_socket.display(), "serving the CRI and the Docker API");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let docker_stopped = stopped.clone();
    let docker = tokio::spawn(crate::docker::serve(core.clone(), docker_listener, async move {
        let mut stopped = docker_stopped;
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let serving = crate::cri::server(core, streaming).serve_with_incoming_shutdown(incoming, async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let mut draining = stopped.clone();
    let drain_limit = async move {
        let _ = draining.wait_for(|s| *s).await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    let result = tokio::select! {
        result = serving => result,
        () = drain_limit => {
            tracing::warn!(limit = ?DRAIN_LIMIT, "clients kept connections open after the signal: stopping anyway");
            Ok(())
        }
    };
    drop(stopped);
    docker.abort();
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&docker_socket);
    result.map_err(DaemonError::from)
}
