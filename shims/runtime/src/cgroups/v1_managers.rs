//! libcgroups' v1 managers, one per cgroup path per process. Making one finds each of
//! twelve controllers' mount by reading mountinfo again (to its end for a controller
//! the host lacks), and mountinfo grows with every container's mounts: building one
//! per stats or freeze call made a node's stats cost grow with its container count.
//! Only request handlers use this cache, never a forked child.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libcgroups::v1::manager::Manager;

use super::{library, CgroupError};

static MANAGERS: OnceLock<Mutex<HashMap<PathBuf, Arc<Manager>>>> = OnceLock::new();

fn managers() -> &'static Mutex<HashMap<PathBuf, Arc<Manager>>> {
    MANAGERS.get_or_init(Default::default)
}

/// The manager of the cgroup at `path` (relative to each hierarchy's root).
pub fn get(path: &Path) -> Result<Arc<Manager>, CgroupError> {
    if let Some(known) = managers().lock().ok().and_then(|cache| cache.get(path).cloned()) {
        return Ok(known);
    }
    let made = Arc::new(Manager::new(path).map_err(|e| library("opening v1 cgroup", path, e))?);
    if let Ok(mut cache) = managers().lock() {
        cache.insert(path.to_path_buf(), made.clone());
    }
    Ok(made)
}

/// Forgets the manager of a cgroup that is gone.
pub fn forget(path: &Path) {
    if let Ok(mut cache) = managers().lock() {
        cache.remove(path);
    }
}
