//! A cgroup directory above containers' own that a caller owns as a whole (a pod's
//! cgroup parent, which berthd removes with the pod): located in every hierarchy as a
//! container's `cgroupsPath` would be, tested for existence, and removed.
use std::path::{Path, PathBuf};

use super::{has_child_cgroups, locate, remove_with_retry, CgroupError};

/// One cgroup path, in every mounted hierarchy.
#[derive(Debug, Clone)]
pub struct SharedParent {
    dirs: Vec<PathBuf>,
}

impl SharedParent {
    /// Places `path` (absolute, or relative as runc places a relative `cgroupsPath`).
    pub fn locate(path: &Path) -> Result<Self, CgroupError> {
        let (_, _, hierarchies) = locate(Some(path), "")?;
        Ok(Self { dirs: hierarchies.into_iter().map(|h| h.dir).collect() })
    }

    /// Whether the directory exists (in the first hierarchy, where containers' own
    /// directories are made first).
    pub fn exists(&self) -> bool {
        self.dirs.first().is_some_and(|dir| dir.is_dir())
    }

    /// Removes the directory from every hierarchy (retrying while its last processes
    /// exit); one that still has cgroups below it is an error, and is left.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        for dir in &self.dirs {
            let outcome = match has_child_cgroups(dir) {
                true => Err(CgroupError::RemoveDir { path: dir.clone(), source: std::io::Error::from_raw_os_error(libc::EBUSY) }),
                false => remove_with_retry(dir),
            };
            if let Err(error) = outcome {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
