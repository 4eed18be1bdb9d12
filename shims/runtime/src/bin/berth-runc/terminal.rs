//! `run` and `exec` with a terminal but no `--console-socket`: berth-runc keeps the pty
//! master itself and copies between it and its own stdio, with its terminal in raw
//! mode and window size changes passed on, as runc does.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;

use nix::sys::socket::{recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::commands::CliError;

fn error(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("terminal: {what}: {e}"))
}

/// A connected socket pair: the runtime sends the master on `theirs`.
pub fn console_pair() -> Result<(OwnedFd, OwnedFd), CliError> {
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(|e| error("socketpair", e))
}

/// Receives the pty master the container process sent.
pub fn receive_master(ours: &OwnedFd) -> Result<OwnedFd, CliError> {
    let mut name = [0u8; 256];
    let mut io = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = recvmsg::<()>(ours.as_raw_fd(), &mut io, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| error("receiving the pty master", e))?;
    for cmsg in message.cmsgs().map_err(|e| error("receiving the pty master", e))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(error("receiving the pty master", "no descriptor was sent"))
}

/// Copies between our stdio and the master until the container side closes.
pub struct Proxy {
    output: JoinHandle<()>,
    saved: Option<Termios>,
    master: OwnedFd,
}

impl Proxy {
    pub fn start(master: OwnedFd) -> Result<Self, CliError> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(original) = &saved {
            let mut raw = original.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        }
        let proxy = Proxy { output: spawn_output(&master)?, saved, master };
        proxy.resize();
        spawn_input(&proxy.master)?;
        Ok(proxy)
    }

    /// Gives the pty our terminal's size.
    pub fn resize(&self) {
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) } == 0 {
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        }
    }

    /// Waits for the last output, then restores our terminal.
    pub fn finish(self) {
        let _ = self.output.join();
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

fn spawn_output(master: &OwnedFd) -> Result<JoinHandle<()>, CliError> {
    let mut from = std::fs::File::from(master.try_clone().map_err(|e| error("dup", e))?);
    Ok(std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        let mut stdout = std::io::stdout();
        // EIO once the last process holding the slave exits.
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || stdout.write_all(&buffer[..n]).and_then(|_| stdout.flush()).is_err() {
                break;
            }
        }
    }))
}

fn spawn_input(master: &OwnedFd) -> Result<(), CliError> {
    let mut to = std::fs::File::from(master.try_clone().map_err(|e| error("dup", e))?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut to);
    });
    Ok(())
}
