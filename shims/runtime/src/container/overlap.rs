//! The handshake that lets the cgroup thread make the container's cgroup directories
//! while the runtime clones an init that runs the runtime's own code before it
//! executes. Such an init may only be cloned while no other thread holds a lock or is
//! inside the allocator: its copy of memory would keep them held forever. So the
//! thread tells the runtime when it starts making the directories (system calls only
//! from then on) and, once they exist, waits until the runtime has cloned before it
//! allocates again. Two close-on-exec pipes carry one byte each way.

use std::cell::Cell;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;

use crate::channel::retry_eintr;

/// The runtime's ends, and the thread's.
pub fn handshake() -> nix::Result<(RuntimeSide, ThreadSide)> {
    let (making_read, making_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (cloned_read, cloned_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let runtime = RuntimeSide { making: making_read, cloned: cloned_write, released: Cell::new(false) };
    Ok((runtime, ThreadSide { making: making_write, cloned: cloned_read }))
}

pub struct ThreadSide {
    making: OwnedFd,
    cloned: OwnedFd,
}

impl ThreadSide {
    /// From now until [`Self::dirs_made`], system calls only.
    pub fn making_dirs(&self) {
        let _ = retry_eintr(|| unsafe { libc::write(self.making.as_raw_fd(), b"m".as_ptr().cast(), 1) });
    }

    /// Waits until the runtime has cloned (or given up on cloning).
    pub fn dirs_made(&self) {
        let mut byte = 0u8;
        let _ = retry_eintr(|| unsafe { libc::read(self.cloned.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) });
    }
}

pub struct RuntimeSide {
    making: OwnedFd,
    cloned: OwnedFd,
    released: Cell<bool>,
}

impl RuntimeSide {
    /// Waits until the thread is making the directories (true), or has finished
    /// without doing so (false: join it before cloning).
    pub fn thread_is_making_dirs(&self) -> bool {
        let mut byte = 0u8;
        matches!(retry_eintr(|| unsafe { libc::read(self.making.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) }), Ok(1))
    }

    /// Lets the thread go on: call right after `clone`. Once only; dropping does it too.
    pub fn release_thread(&self) {
        if !self.released.replace(true) {
            let _ = retry_eintr(|| unsafe { libc::write(self.cloned.as_raw_fd(), b"c".as_ptr().cast(), 1) });
        }
    }
}

impl Drop for RuntimeSide {
    fn drop(&mut self) {
        self.release_thread();
    }
}
