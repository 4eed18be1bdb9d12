//! Waiting for a process that is not our child (a daemonized shim) to exit, through a
//! pidfd, which becomes readable when the process is gone.
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// A process whose exit can be awaited.
pub struct ProcessExit {
    pidfd: AsyncFd<OwnedFd>,
}

impl ProcessExit {
    /// Watches `pid`; fails when no such process exists (any more).
    pub fn watch(pid: u32) -> std::io::Result<Self> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1;
        // it touches no memory of ours.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor that pidfd_open has just opened for us alone.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        // SAFETY: the AsyncFd owns `pidfd` (it is moved in), so the descriptor stays open
        // for as long as it is registered.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }.map_err(std::io::Error::from)?;
        Ok(Self { pidfd })
    }

    /// Returns whether the process exited within `limit`.
    pub async fn wait(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.pidfd.readable()).await.is_ok_and(|ready| ready.is_ok())
    }
}
