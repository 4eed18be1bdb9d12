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

/// Masks paths one after another: the first directory gets an empty read-only tmpfs,
/// later ones a bind mount of it (one filesystem to make and tear down, not one each);
/// a file gets /dev/null. A path that does not exist is skipped.
#[derive(Default)]
pub struct Masker {
    first_directory: Option<String>,
}

impl Masker {
    pub fn mask(&mut self, path: &str) -> Result<(), RootfsError> {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(_) => return Ok(()),
        };
        let result = match (metadata.is_dir(), &self.first_directory) {
            (true, Some(first)) => mount(Some(first.as_str()), path, None::<&str>, MsFlags::MS_BIND, None::<&str>),
            (true, None) => mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
                .inspect(|()| self.first_directory = Some(path.to_string())),
            (false, _) => mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>),
        };
        match result {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(error(path, "masking", e)),
        }
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
