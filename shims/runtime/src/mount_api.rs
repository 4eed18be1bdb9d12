//! The new mount API calls that nix does not wrap: `mount_setattr` on a mount given by
//! descriptor (a detached tree from `open_tree`, or a mount in the rootfs).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

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

/// Makes the (detached) mount `target` an idmapped mount, with the id maps of the user
/// namespace `userns`.
pub fn set_idmap(target: &OwnedFd, userns: BorrowedFd, recursive: bool) -> Result<(), Errno> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    mount_setattr(target, attr, recursive)
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
