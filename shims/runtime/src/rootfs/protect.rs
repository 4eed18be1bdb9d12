//! Inside the new root: masking paths (an empty read-only tmpfs over a directory,
//! /dev/null over a file) and making paths, or the whole root, read-only.

use std::ffi::CString;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use super::mounts::remount_bind;
use super::RootfsError;

fn error(path: &str, what: &'static str, source: Errno) -> RootfsError {
    RootfsError::Path { path: path.to_string(), what, source }
}

pub fn mask(path: &str) -> Result<(), RootfsError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(_) => return Ok(()),
    };
    let result = if metadata.is_dir() {
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
    } else {
        mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    };
    match result {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(error(path, "masking", e)),
    }
}

pub fn make_read_only(path: &str) -> Result<(), RootfsError> {
    match mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>) {
        Ok(()) => remount_read_only(path),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(error(path, "binding read-only", e)),
    }
}

pub fn remount_read_only(path: &str) -> Result<(), RootfsError> {
    let target = CString::new(path).map_err(|_| error(path, "remounting read-only", Errno::EINVAL))?;
    remount_bind(&target, MsFlags::MS_RDONLY, MsFlags::empty()).map_err(|e| error(path, "remounting read-only", e))
}
