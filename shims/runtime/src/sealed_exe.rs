//! Keeps a container from reaching the runtime's own binary (the CVE-2019-5736 class):
//! a process that runs inside a container's namespaces before `execve` (the init, an
//! exec'd process) must not have a writable host file as its `/proc/<pid>/exe`.
//!
//! Before creating such processes, the runtime re-executes itself from a detached,
//! read-only bind mount of its own binary (`open_tree` + `mount_setattr`, visible in no
//! mount namespace). Writing through `/proc/<pid>/exe` then fails with EROFS. When the
//! binary already lives on a read-only mount nothing is done.
//!
//! Closing the last descriptor of that detached mount dissolves it, which waits for an
//! RCU grace period (from 0.05 to several milliseconds). The descriptor is therefore
//! handed to the re-executed process, which closes it when waiting costs nothing (see
//! [`release`]); children close their copy as soon as they exist.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Names, in the re-executed process's environment, the inherited descriptor of the
/// detached mount it runs from.
const TREE_FD_VARIABLE: &str = "_BERTH_SEALED_TREE_FD";

/// The inherited descriptor of the detached mount, or -1.
static TREE_FD: AtomicI32 = AtomicI32::new(-1);

/// Re-executes the current program from a read-only detached mount of itself, with the
/// same arguments and environment, unless it already runs from a read-only mount.
/// Returns only when nothing had to be done, or on error.
pub fn ensure_sealed_executable() -> Result<(), SealError> {
    if executable_is_sealed() {
        adopt_inherited_tree();
        return Ok(());
    }
    let sealed = read_only_clone_of_self()?;
    let to_cstrings = |items: Vec<std::ffi::OsString>| -> Vec<CString> {
        items.into_iter().filter_map(|s| CString::new(s.into_encoded_bytes()).ok()).collect()
    };
    let args = to_cstrings(std::env::args_os().collect());
    let tree_fd = (TREE_FD_VARIABLE.into(), sealed.as_raw_fd().to_string().into());
    let variables = std::env::vars_os().filter(|(k, _)| k != TREE_FD_VARIABLE).chain(std::iter::once(tree_fd));
    let env = to_cstrings(variables.map(|(k, v)| {
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

/// Takes over the descriptor the unsealed process passed on, if it is really the
/// mount of this binary, and makes sure no program this process executes inherits it.
fn adopt_inherited_tree() {
    let Some(fd) = std::env::var(TREE_FD_VARIABLE).ok().and_then(|v| v.parse::<i32>().ok()) else { return };
    std::env::remove_var(TREE_FD_VARIABLE);
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let identity = |m: std::fs::Metadata| (m.dev(), m.ino());
    let tree = borrowed.try_clone_to_owned().and_then(|owned| std::fs::File::from(owned).metadata());
    let ours = std::fs::metadata("/proc/self/exe");
    if let (Ok(tree), Ok(ours)) = (tree, ours) {
        if identity(tree) == identity(ours) && unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
            TREE_FD.store(fd, Ordering::SeqCst);
        }
    }
}

/// In a child of the runtime, right after `clone`: drops the child's copy of the
/// descriptor. The parent still holds one, so this does not wait.
pub fn close_in_child() {
    let fd = TREE_FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
}

/// Keeps `tree` (a detached mount of this binary that a child runs from) open until
/// [`release`], so that closing it does not wait on a critical path.
pub fn hold(tree: OwnedFd) {
    use std::os::fd::IntoRawFd;
    let previous = TREE_FD.swap(tree.into_raw_fd(), Ordering::SeqCst);
    if previous >= 0 {
        unsafe { libc::close(previous) };
    }
}

/// Closes the descriptor, dissolving the detached mount (the running binary keeps it
/// alive). Call once every child that inherited it has closed its copy, at a moment
/// when the caller would wait anyway; if never called, the exit does it.
pub fn release() {
    close_in_child();
}

/// An O_PATH descriptor of this binary on a new, detached, read-only bind mount. It is
/// inherited across the re-exec (no O_CLOEXEC).
pub(crate) fn read_only_clone_of_self() -> Result<OwnedFd, SealError> {
    read_only_clone_of(c"/proc/self/exe")
}

/// A read-only detached mount of `path` (a file or a directory), dissolved when the
/// descriptor is closed: what runs from it has a read-only `/proc/self/exe`.
pub fn read_only_clone_of(path: &std::ffi::CStr) -> Result<OwnedFd, SealError> {
    let tree = crate::mount_api::clone_tree(path, false, false).map_err(|e| SealError::System("open_tree", e.into()))?;
    crate::mount_api::set_mount_attributes(&tree, crate::mount_api::MOUNT_ATTR_RDONLY, 0, false)
        .map_err(|e| SealError::System("mount_setattr", e.into()))?;
    Ok(tree)
}
