//! A container's filesystem as berthd reaches it: a running container's through
//! `/proc/PID/root` (its mounts included), a stopped one's through a short-lived
//! overlay mount of its snapshot. Paths inside it are resolved as the container would
//! resolve them: `..` and symlinks never lead out of its root. `open_layers` gives
//! the merged layers alone (read-only, none of the container's mounts), as export wants.
use std::io;
use std::path::{Component, Path, PathBuf};

use super::{DockerError, DockerResult, NAMESPACE};
use crate::core::{ContainerRecord, ContainerState, Core};

/// Symlinks followed in one resolution before giving up (as the kernel's ELOOP).
const MAX_LINK_HOPS: usize = 40;

/// The root of a container's filesystem; unmounts what it mounted when dropped.
pub struct RootView {
    root: PathBuf,
    mounted: Option<PathBuf>,
}

impl RootView {
    pub fn open(core: &Core, record: &ContainerRecord) -> DockerResult<RootView> {
        let current = core.container(NAMESPACE, &record.id).unwrap_or_else(|_| record.clone());
        if current.state == ContainerState::Running && current.pid > 0 {
            let root = PathBuf::from(format!("/proc/{}/root", current.pid));
            if root.join(".").exists() {
                return Ok(RootView { root, mounted: None });
            }
        }
        let overlay = core.images.active_mounts(&current.snapshot_key).map_err(|e| DockerError::internal(format!("the container's filesystem: {e}")))?;
        Self::mount_with(core, &current, |target| overlay.mount(target))
    }

    /// The container's layers merged read-only (its writable layer on top), running or
    /// not: what the image and the container wrote, without /proc, /sys, binds or volumes.
    pub fn open_layers(core: &Core, record: &ContainerRecord) -> DockerResult<RootView> {
        let overlay = core.images.active_mounts(&record.snapshot_key).map_err(|e| DockerError::internal(format!("the container's filesystem: {e}")))?;
        let layers: Vec<PathBuf> = std::iter::once(overlay.upperdir.clone()).chain(overlay.lowerdirs.iter().cloned()).collect();
        Self::mount_with(core, record, |target| crate::snapshot::mount_layers_read_only(&layers, target))
    }

    /// Mounts with `mount` at a fresh directory of the container's state.
    fn mount_with(core: &Core, record: &ContainerRecord, mount: impl FnOnce(&Path) -> io::Result<()>) -> DockerResult<RootView> {
        let target = core.paths.state.join("docker").join(&record.spec.sandbox_id).join(format!("view-{}", crate::core::now_nanos()));
        std::fs::create_dir_all(&target).map_err(|e| DockerError::internal(format!("creating {}: {e}", target.display())))?;
        if let Err(error) = mount(&target) {
            let _ = std::fs::remove_dir(&target);
            return Err(DockerError::internal(format!("mounting the container's filesystem: {error}")));
        }
        Ok(RootView { root: target.clone(), mounted: Some(target) })
    }

    /// The host path of `path` inside the container; the last component is followed
    /// when it is a symlink only if `follow_last`.
    pub fn resolve(&self, path: &str, follow_last: bool) -> io::Result<PathBuf> {
        resolve_in_root(&self.root, Path::new(path), follow_last)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for RootView {
    fn drop(&mut self) {
        if let Some(target) = self.mounted.take() {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&target);
        }
    }
}

/// Joins `path` to `root` component by component, resolving symlinks against `root`.
pub fn resolve_in_root(root: &Path, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut pending: Vec<PathBuf> = path.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(next) = pending.pop() {
        match next.components().next() {
            Some(Component::RootDir | Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(&resolved).join(&next);
        let is_last = pending.is_empty();
        let link = std::fs::symlink_metadata(&candidate).map(|m| m.file_type().is_symlink()).unwrap_or(false);
        if !link || (is_last && !follow_last) {
            resolved.push(&next);
            continue;
        }
        hops += 1;
        if hops > MAX_LINK_HOPS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = std::fs::read_link(&candidate)?;
        if target.is_absolute() {
            resolved = PathBuf::new();
        }
        pending.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_dot_dot_stay_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/sub")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../..", root.join("etc/sub/up")).expect("symlink");
        assert_eq!(resolve_in_root(root, Path::new("/abs/sub"), true).expect("resolve"), root.join("etc/sub"));
        assert_eq!(resolve_in_root(root, Path::new("/etc/sub/up/passwd"), true).expect("resolve"), root.join("passwd"));
        assert_eq!(resolve_in_root(root, Path::new("/../../x"), true).expect("resolve"), root.join("x"));
        assert_eq!(resolve_in_root(root, Path::new("/abs"), false).expect("resolve"), root.join("abs"));
        std::os::unix::fs::symlink("loop", root.join("loop")).expect("symlink");
        assert!(resolve_in_root(root, Path::new("/loop"), true).is_err());
    }
}
