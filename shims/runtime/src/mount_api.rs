//! The new mount API calls that nix does not wrap: `mount_setattr` on a mount given by
//! descriptor (a detached tree from `open_tree`, or a mount in the rootfs), `open_tree`
//! to make a detached copy of a tree, and `move_mount` to attach one.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_SYMLINKS: u32 = 0x10;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets and clears MOUNT_ATTR_* bits on the mount `target` refers to (and, with
/// `recursive`, on every mount below it).
pub fn set_mount_attributes(target: &OwnedFd, set: u64, clear: u64, recursive: bool) -> Result<(), Errno> {
    mount_setattr(target, MountAttr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 }, recursive)
}

/// Makes the detached tree `tree` idmapped with the user namespace `userns`.
pub fn set_idmap(tree: &OwnedFd, userns: &OwnedFd, recursive: bool) -> Result<(), Errno> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    mount_setattr(tree, attr, recursive)
}

fn mount_setattr(target: &OwnedFd, attr: MountAttr, recursive: bool) -> Result<(), Errno> {
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            target.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// A detached copy of the mount at `path` (with every mount below it when `recursive`),
/// dissolved when its last descriptor is closed.
pub fn clone_tree(path: &CStr, recursive: bool, close_on_exec: bool) -> Result<OwnedFd, Errno> {
    let mut flags = libc::OPEN_TREE_CLONE;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    if close_on_exec {
        flags |= libc::OPEN_TREE_CLOEXEC;
    }
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 { Err(Errno::last()) } else { Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }) }
}

/// Attaches the detached tree `tree` at `target`, following symlinks there (a
/// `/proc/self/fd/N` target is one).
pub fn attach_tree(tree: &OwnedFd, target: &CStr) -> Result<(), Errno> {
    let result = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
        )
    };
    if result < 0 { Err(Errno::last()) } else { Ok(()) }
}
