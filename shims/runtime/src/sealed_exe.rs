//! Keeps a container from reaching the runtime's own binary (the CVE-2019-5736 class):
//! a process that runs inside a container's namespaces before `execve` (the init, an
//! exec'd process) must not have a writable host file as its `/proc/<pid>/exe`.
//!
//! Before creating such processes, the runtime re-executes itself from a detached,
//! read-only bind mount of its own binary (`open_tree` + `mount_setattr`, visible in no
//! mount namespace). Writing through `/proc/<pid>/exe` then fails with EROFS. When the
//! binary already lives on a read-only mount nothing is done.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SealError {
    #[error("protecting the runtime binary: {0}: {1}")]
    System(&'static str, std::io::Error),
}

fn last_error(what: &'static str) -> SealError {
    SealError::System(what, std::io::Error::last_os_error())
}

/// Whether the running binary sits on a read-only mount.
pub fn executable_is_sealed() -> bool {
    nix::sys::statvfs::statvfs("/proc/self/exe")
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Re-executes the current program from a read-only detached mount of itself, with the
/// same arguments and environment, unless it already runs from a read-only mount.
/// Returns only when nothing had to be done, or on error.
pub fn ensure_sealed_executable() -> Result<(), SealError> {
    if executable_is_sealed() {
        return Ok(());
    }
    let sealed = read_only_clone_of_self()?;
    let to_cstrings = |items: Vec<std::ffi::OsString>| -> Vec<CString> {
        items.into_iter().filter_map(|s| CString::new(s.into_encoded_bytes()).ok()).collect()
    };
    let args = to_cstrings(std::env::args_os().collect());
    let env = to_cstrings(std::env::vars_os().map(|(k, v)| {
        let mut entry = k;
        entry.push("=");
        entry.push(v);
        entry
    }).collect());
    let pointers = |items: &[CString]| -> Vec<*const libc::c_char> {
        items.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
    };
    let (argv, envp) = (pointers(&args), pointers(&env));
    unsafe {
        libc::syscall(libc::SYS_execveat, sealed.as_raw_fd(), c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH);
    }
    Err(last_error("execveat"))
}

/// An O_PATH descriptor of this binary on a new, detached, read-only bind mount.
fn read_only_clone_of_self() -> Result<OwnedFd, SealError> {
    let flags = libc::OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/proc/self/exe".as_ptr(), flags) };
    if fd < 0 {
        return Err(last_error("open_tree"));
    }
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    crate::mount_api::set_mount_attributes(&tree, crate::mount_api::MOUNT_ATTR_RDONLY, 0, false)
        .map_err(|e| SealError::System("mount_setattr", e.into()))?;
    Ok(tree)
}
