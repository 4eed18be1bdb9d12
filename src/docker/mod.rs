//! The Docker Engine API façade (API 1.50, and every version from 1.24 in the path):
//! routes grouped by resource, translating to calls of the core and the images
//! service. Docker's objects live in the core's `docker` namespace, each container in
//! a sandbox of its own on the default bridge; the Docker id is the sandbox's id.
pub mod archive;
pub mod attach;
pub mod changes;
pub mod containers;
pub mod create;
pub mod endpoint_release;
pub mod error;
pub mod exec;
pub mod extras;
pub mod health;
pub mod hijack;
pub mod host_options;
pub mod images;
pub mod links;
pub mod login;
pub mod logs;
pub mod mounts;
pub mod network_attach;
pub mod networks;
pub mod port_check;
pub mod recovery;
pub mod restart;
pub mod rootview;
pub mod stdio;
pub mod system;
pub mod upload;
pub mod volume_copy;
pub mod volume_store;
pub mod volumes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::core::SharedCore;
pub use error::{DockerError, DockerResult};

/// The namespace of the core that Docker's objects live in.
pub const NAMESPACE: &str = "docker";
pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.24";

/// What the façade keeps besides the core: the live stdio of containers, execs, and
/// exit codes of auto-removed containers (for `wait?condition=removed`).
pub struct Docker {
    pub core: SharedCore,
    pub consoles: Mutex<HashMap<String, Arc<stdio::Console>>>,
    pub execs: Mutex<HashMap<String, Arc<exec::ExecRecord>>>,
    pub removed_exits: Mutex<HashMap<String, i32>>,
    pub paused: Mutex<std::collections::HashSet<String>>,
    pub events: tokio::sync::broadcast::Sender<system::DockerEvent>,
    /// The last events, for `/events?since=`.
    pub event_history: Mutex<Vec<system::DockerEvent>>,
    pub volumes: volume_store::VolumeStore,
    /// Held while a volume's users are checked and it is removed, and while a create
    /// takes its volumes, so that no volume in use goes.
    pub volume_lock: tokio::sync::Mutex<()>,
    /// Serializes containers giving their endpoints back and taking them again
    /// (`endpoint_release`).
    pub network_lock: tokio::sync::Mutex<()>,
    /// Containers between taking their endpoints back and running: never released.
    pub starting: Mutex<std::collections::HashSet<String>>,
    pub restarts: restart::Restarts,
    pub health: health::HealthBoard,
}

pub type State = Arc<Docker>;

impl Docker {
    pub fn new(core: SharedCore) -> State {
        let (events, _) = tokio::sync::broadcast::channel(256);
        Arc::new(Docker {
            consoles: Default::default(),
            execs: Default::default(),
            removed_exits: Default::default(),
            paused: Default::default(),
            events,
            event_history: Default::default(),
            volumes: volume_store::VolumeStore::new(&core.paths.root),
            volume_lock: Default::default(),
            network_lock: Default::default(),
            starting: Default::default(),
            restarts: Default::default(),
            health: Default::default(),
            core,
        })
    }

    pub fn console(&self, id: &str) -> Option<Arc<stdio::Console>> {
        self.consoles.lock().ok()?.get(id).cloned()
    }
}

/// `/v1.NN/...` becomes `...`; versions outside 1.24..=1.50 are refused as dockerd does.
async fn strip_version(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let versioned = path.strip_prefix("/v").and_then(|rest| rest.split_once('/')).filter(|(version, _)| api_minor(version).is_some());
    let mut minor = API_MINOR;
    if let Some((version, tail)) = versioned {
        if let Some(error) = version_error(version) {
            return error.into_response();
        }
        minor = api_minor(version).unwrap_or(API_MINOR);
        let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        if let Ok(uri) = format!("/{tail}{query}").parse() {
            *request.uri_mut() = uri;
        }
    }
    REQUEST_API_MINOR.scope(minor, next.run(request)).await
}

/// The minor of [`API_VERSION`].
const API_MINOR: u32 = 50;

tokio::task_local! {
    /// The API version's minor the request being served named (1.NN), for the answers
    /// whose shape changed between versions.
    static REQUEST_API_MINOR: u32;
}

/// The minor API version of the request being served (the newest outside a request).
pub fn request_api_minor() -> u32 {
    REQUEST_API_MINOR.try_with(|minor| *minor).unwrap_or(API_MINOR)
}

fn api_minor(version: &str) -> Option<u32> {
    version.strip_prefix("1.")?.parse().ok()
}

fn version_error(version: &str) -> Option<DockerError> {
    let minor = api_minor(version)?;
    if minor < 24 {
        return Some(DockerError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if minor > 50 {
        return Some(DockerError::bad_request(format!("client version {version} is too new. Maximum supported API version is {API_VERSION}")));
    }
    None
}

async fn not_found(request: Request) -> DockerError {
    DockerError::not_found(format!("page not found: {} {}", request.method(), request.uri().path()))
}

fn routes(state: State) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/auth", post(login::auth))
        .route("/system/df", get(system::disk_usage))
        .merge(containers::routes())
        .merge(archive::routes())
        .merge(changes::routes())
        .merge(exec::routes())
        .merge(images::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .fallback(not_found)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(core: SharedCore, listener: tokio::net::UnixListener, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    use axum::ServiceExt;
    use tower::Layer;
    let state = Docker::new(core);
    recovery::settle(&state).await;
    state.volumes.recover();
    tokio::spawn(containers::watch_exits(state.clone()));
    health::resume(&state);
    tokio::spawn(restart::resume(state.clone()));
    let app = axum::middleware::from_fn(strip_version).layer(routes(state));
    axum::serve(listener, app.into_make_service()).with_graceful_shutdown(shutdown).await
}
