//! Resolving paths inside the rootfs without ever leaving it: `openat2` with
//! RESOLVE_IN_ROOT treats the rootfs as `/` for every symlink and `..`, and missing
//! components are created one at a time beneath descriptors already inside.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;

use super::RootfsError;

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn path_error(path: &Path, what: &'static str, source: Errno) -> RootfsError {
    RootfsError::Path { path: path.display().to_string(), what, source }
}

/// An O_PATH descriptor of the rootfs directory.
pub fn open_root(rootfs: &Path) -> Result<OwnedFd, RootfsError> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let fd = nix::fcntl::open(rootfs, nix::fcntl::OFlag::from_bits_truncate(flags), nix::sys::stat::Mode::empty())
        .map_err(|e| path_error(rootfs, "opening the rootfs", e))?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat2(dir, path, flags, RESOLVE_IN_ROOT): `dir` acts as `/`.
pub fn open_in_root(dir: &OwnedFd, path: &Path, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let c_path = CString::new(relative.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        let fd = unsafe {
            libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), c_path.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
        };
        match fd {
            fd if fd >= 0 => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
            _ if Errno::last() == Errno::EAGAIN || Errno::last() == Errno::EINTR => continue,
            _ => return Err(Errno::last()),
        }
    }
}

/// What to create at the end of a path that does not exist yet.
#[derive(Clone, Copy, PartialEq)]
pub enum Leaf {
    Directory,
    File,
}

/// An O_PATH descriptor of `path` inside `root`, creating it (and missing parent
/// directories) when absent.
pub fn open_or_create(root: &OwnedFd, path: &Path, leaf: Leaf) -> Result<OwnedFd, RootfsError> {
    match open_in_root(root, path, libc::O_PATH, 0) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(path_error(path, "resolving inside the rootfs", e)),
    }
    let (parent, name) = split_last(path).ok_or_else(|| path_error(path, "resolving inside the rootfs", Errno::ENOENT))?;
    let parent_fd = open_or_create(root, parent, Leaf::Directory)?;
    create_entry(&parent_fd, name, leaf).map_err(|e| path_error(path, "creating the mount point", e))?;
    open_in_root(root, path, libc::O_PATH, 0).map_err(|e| path_error(path, "resolving inside the rootfs", e))
}

fn split_last(path: &Path) -> Option<(&Path, &std::ffi::OsStr)> {
    match path.components().next_back()? {
        Component::Normal(name) => Some((path.parent()?, name)),
        _ => None,
    }
}

/// Creates one directory or empty file in `parent` (an O_PATH descriptor, reopened).
fn create_entry(parent: &OwnedFd, name: &std::ffi::OsStr, leaf: Leaf) -> Result<(), Errno> {
    let dir = reopen_directory(parent)?;
    let c_name = CString::new(name.as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let result = match leaf {
        Leaf::Directory => unsafe { libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), 0o755) },
        Leaf::File => {
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            let fd = unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), flags, 0o644) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            fd.min(0)
        }
    };
    match result {
        0 => Ok(()),
        _ if Errno::last() == Errno::EEXIST => Ok(()),
        _ => Err(Errno::last()),
    }
}

/// A real (not O_PATH) descriptor for the same directory, usable with *at calls.
pub fn reopen_directory(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let path = proc_fd_path(fd);
    let reopened = unsafe { libc::open(path.as_ptr(), flags) };
    if reopened < 0 {
        return Err(Errno::last());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(reopened) })
}

/// `/proc/self/fd/N`: the path through which a descriptor is mounted on or reopened.
pub fn proc_fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}
