//! Pinned network namespaces for sandboxes: a new namespace bind-mounted on
//! `<state>/netns/<id>` so it outlives every process in it; removal unmounts and unlinks
//! the pin (the namespace goes once nothing else holds it).
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::error::{NetworkError, Result};

/// Where the pin of sandbox `id` lives under the daemon's state directory.
pub fn pin_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("netns").join(id)
}

/// Creates a network namespace pinned at `path`. The namespace is made on a thread of
/// its own, which `unshare`s and then ends, so no other thread changes namespace.
pub fn create_pinned(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| NetworkError::io(format!("mkdir {}", parent.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => NetworkError::AlreadyExists {
                what: "network namespace",
                name: path.display().to_string(),
            },
            _ => NetworkError::io(format!("create {}", path.display()), e),
        })?;
    let target = path.to_path_buf();
    let pinned = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
        Ok(())
    })
    .join()
    .map_err(|_| NetworkError::Netlink("netns thread panicked".into()))?;
    if pinned.is_err() {
        let _ = std::fs::remove_file(path);
    }
    pinned
}

/// Unmounts and removes the pin; a pin that is already gone is not an error.
pub fn remove_pinned(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NetworkError::io(format!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}
