//! The core both front doors share: pod sandboxes and containers, their records in the
//! metadata store, their shims, and the events they raise. A front door translates its
//! requests into these calls and maps [`CoreError`] to its own status codes.
pub mod cgroup_parent;
pub mod container;
pub mod events;
pub mod exec;
pub mod front;
pub mod handlers;
pub mod ids;
pub mod intents;
pub mod limits;
pub mod locks;
pub mod network_release;
pub mod networks;
pub mod pin;
pub mod pod_init;
pub mod port_forward;
pub mod recovery;
pub mod records;
pub mod rename;
pub mod rootfs;
pub mod sandbox;
pub mod stats;
pub mod task_io;
pub mod update;
pub mod userns;

use std::path::PathBuf;
use std::sync::Arc;

use crate::daemon::config::Config;
use crate::store::{Store, StoreError};
use crate::task::{ShimManager, TaskError};

pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl From<ttrpc::Error> for CoreError {
    fn from(error: ttrpc::Error) -> Self {
        CoreError::Task(TaskError::Rpc(error))
    }
}

pub fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CoreError {
    let context = context.into();
    move |source| CoreError::Io { context, source }
}

/// Where the core keeps things on disk (see DESIGN.md).
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub state: PathBuf,
    /// `berth-pod-init`, for pods that share a PID namespace.
    pub pod_init_binary: PathBuf,
}

impl Paths {
    pub fn bundle(&self, container_id: &str) -> PathBuf {
        self.root.join("containers").join(container_id)
    }
    pub fn netns(&self, sandbox_id: &str) -> PathBuf {
        self.state.join("netns").join(sandbox_id)
    }
    pub fn sandbox_dir(&self, sandbox_id: &str) -> PathBuf {
        self.state.join("sandboxes").join(sandbox_id)
    }
    pub fn shim_root(&self) -> PathBuf {
        self.state.join("shims")
    }
    pub fn exec_dir(&self) -> PathBuf {
        self.state.join("exec")
    }
}

/// Everything the core needs, shared by every request.
pub struct Core {
    pub config: Config,
    pub paths: Paths,
    pub store: Store,
    pub shims: ShimManager,
    pub images: crate::image::ImageService,
    pub network: crate::network::NetworkManager,
    pub events: events::EventBus,
    /// One lock per pod: changes to a pod's records (its creation, its containers'
    /// creations, starts, exits, stops and removals) are ordered; pods are independent.
    pub(crate) pod_locks: locks::KeyedLocks,
    /// Each runtime handler's features, found on first use.
    pub(crate) handler_features: tokio::sync::OnceCell<std::collections::BTreeMap<String, handlers::HandlerFeatures>>,
}

pub type SharedCore = Arc<Core>;

impl Core {
    /// Waits for the lock of the pod `sandbox_id`.
    pub(crate) async fn lock_pod(&self, namespace: &str, sandbox_id: &str) -> locks::KeyGuard {
        self.pod_locks.lock(&record_key(namespace, sandbox_id)).await
    }

    /// Waits for the lock of the pod of the container `id` (id or unique prefix), and
    /// reads the container's record again under it.
    pub(crate) async fn lock_pod_of(&self, namespace: &str, id: &str) -> CoreResult<(locks::KeyGuard, ContainerRecord)> {
        let found = self.container(namespace, id)?;
        let guard = self.lock_pod(namespace, &found.spec.sandbox_id).await;
        let record = self.container(namespace, &found.id)?;
        Ok((guard, record))
    }

    /// Claims a unique name for `id` and writes its first record, in one transaction.
    pub(crate) fn claim_name<T: serde::Serialize>(&self, table: crate::store::Table<T>, namespace: &str, kind: &str, name: &str, id: &str, record: &T) -> CoreResult<()> {
        let name_entry = name_key(namespace, kind, name);
        self.store.write(|txn| {
            if let Some(owner) = txn.get(NAMES, &name_entry)? {
                return Err(CoreError::AlreadyExists(format!("a {kind} named {name:?} already exists ({owner})")));
            }
            txn.put(NAMES, &name_entry, &id.to_string())?;
            txn.put(table, &record_key(namespace, id), record)?;
            Ok(())
        })
    }

    /// Deletes a record and releases its name (if the name is still its own).
    pub(crate) fn release_name<T>(&self, table: crate::store::Table<T>, namespace: &str, kind: &str, name: &str, id: &str) -> CoreResult<()> {
        let name_entry = name_key(namespace, kind, name);
        self.store.write(|txn| {
            if txn.get(NAMES, &name_entry)?.as_deref() == Some(id) {
                txn.delete(NAMES, &name_entry)?;
            }
            txn.delete(table, &record_key(namespace, id))?;
            Ok(())
        })
    }
}

/// Nanoseconds since the epoch, as the CRI reports times.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}
