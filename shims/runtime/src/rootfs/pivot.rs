//! Switching the init into its new root: pivot_root with the old root detached, or,
//! with `--no-pivot` (for ramdisk roots), a move of the rootfs onto `/` and a chroot;
//! without a mount namespace of its own, a chroot alone.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::RootfsError;

fn pivot_error(rootfs: &Path, what: &'static str, source: nix::Error) -> RootfsError {
    RootfsError::Pivot { rootfs: rootfs.to_path_buf(), what, source }
}

pub fn switch_root(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    if no_pivot {
        move_and_chroot(rootfs)
    } else {
        pivot(rootfs)
    }?;
    nix::unistd::chdir("/").map_err(|e| pivot_error(rootfs, "chdir /", e))
}

/// For a container in the caller's mount namespace, where pivot_root or a move would
/// change the root of every process sharing it: a chroot of this process only.
pub fn chroot_only(rootfs: &Path) -> Result<(), RootfsError> {
    nix::unistd::chroot(rootfs).map_err(|e| pivot_error(rootfs, "chroot", e))?;
    nix::unistd::chdir("/").map_err(|e| pivot_error(rootfs, "chdir /", e))
}

fn open_dir(path: &Path, rootfs: &Path) -> Result<OwnedFd, RootfsError> {
    let flags = nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).map_err(|e| pivot_error(rootfs, "open", e))?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pivot_root(".", "."): the old root ends up on top of the new one, where it is made
/// a slave (so its unmount does not reach the host) and detached.
fn pivot(rootfs: &Path) -> Result<(), RootfsError> {
    let old_root = open_dir(Path::new("/"), rootfs)?;
    let new_root = open_dir(rootfs, rootfs)?;
    nix::unistd::fchdir(new_root.as_raw_fd()).map_err(|e| pivot_error(rootfs, "fchdir", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| pivot_error(rootfs, "pivot_root", e))?;
    nix::unistd::fchdir(old_root.as_raw_fd()).map_err(|e| pivot_error(rootfs, "fchdir to the old root", e))?;
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| pivot_error(rootfs, "making the old root a slave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| pivot_error(rootfs, "detaching the old root", e))
}

fn move_and_chroot(rootfs: &Path) -> Result<(), RootfsError> {
    nix::unistd::chdir(rootfs).map_err(|e| pivot_error(rootfs, "chdir", e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| pivot_error(rootfs, "moving the rootfs onto /", e))?;
    nix::unistd::chroot(".").map_err(|e| pivot_error(rootfs, "chroot", e))
}
