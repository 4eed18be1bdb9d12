//! The sync channel between the runtime and the processes it creates: a SEQPACKET
//! socket pair carrying one small JSON message per packet. The child's end is
//! close-on-exec, so a successful `execve` closes it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// Messages on the sync channel, in either direction.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Message {
    /// Runtime to a handed-over init (see [`crate::handoff`]): what to become.
    Init(crate::handoff::InitRequest),
    /// Runtime to child: proceed to the next stage.
    Go,
    /// Runtime to child: you are in your cgroup now.
    Placed,
    /// Runtime to a container's init: move yourself into your cgroup by writing 0 to
    /// each of these files (and these are the host's v1 hierarchies).
    PlaceYourself(crate::cgroups::SelfPlacement),
    /// Child to runtime: write my uid and gid maps, then send Go.
    MapRequest,
    /// Child to runtime: the process that will become the container's is this pid.
    ChildPid(i32),
    /// Child to runtime: rootfs is mounted; run prestart and createRuntime hooks, then Go.
    RunHooks,
    /// Runtime to child: the runtime's hooks ran; here is the state for the child's own.
    HooksDone(String),
    /// Child to runtime: set up and waiting for `start`.
    Ready,
    /// Child to runtime: setting up failed.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
}

/// Creates the runtime's end and the child's end.
pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl From<OwnedFd> for Channel {
    fn from(fd: OwnedFd) -> Self {
        Channel { fd }
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Channel {
    pub fn send(&self, message: &Message) -> io::Result<()> {
        let bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
        let written = retry_eintr(|| unsafe {
            libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL)
        })?;
        if written as usize != bytes.len() {
            return Err(io::Error::other("short write on sync channel"));
        }
        Ok(())
    }

    /// The next message, or None when the other end is closed.
    pub fn receive(&self) -> io::Result<Option<Message>> {
        // The next packet's whole length (a spec can be large), then the packet.
        let length = retry_eintr(|| unsafe {
            libc::recv(self.fd.as_raw_fd(), std::ptr::null_mut(), 0, libc::MSG_PEEK | libc::MSG_TRUNC)
        })?;
        let mut buffer = vec![0u8; (length as usize).max(1)];
        let read = retry_eintr(|| unsafe {
            libc::recv(self.fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0)
        })?;
        if read == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buffer[..read as usize]).map(Some).map_err(io::Error::other)
    }

    /// Waits for `Go`; anything else is an error.
    pub fn expect_go(&self) -> io::Result<()> {
        self.expect(Message::Go)
    }

    /// Waits for `wanted`; anything else is an error.
    pub fn expect(&self, wanted: Message) -> io::Result<()> {
        match self.receive()? {
            Some(message) if message == wanted => Ok(()),
            other => Err(io::Error::other(format!("sync channel: expected {wanted:?}, got {other:?}"))),
        }
    }
}

/// Repeats a system call interrupted by a signal.
pub(crate) fn retry_eintr(mut call: impl FnMut() -> isize) -> io::Result<isize> {
    loop {
        let result = call();
        if result >= 0 {
            return Ok(result);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof() {
        let (a, b) = pair().unwrap();
        a.send(&Message::ChildPid(42)).unwrap();
        a.send(&Message::Error("boom".into())).unwrap();
        assert_eq!(b.receive().unwrap(), Some(Message::ChildPid(42)));
        assert_eq!(b.receive().unwrap(), Some(Message::Error("boom".into())));
        drop(a);
        assert_eq!(b.receive().unwrap(), None);
    }
}
