//! The container's terminal: a pty made inside the container's own devpts, its slave
//! becoming the process's stdio and controlling terminal, and its master sent to the
//! caller's `--console-socket` over SCM_RIGHTS.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("process.terminal is true but no --console-socket was given")]
    Missing,
    #[error("connecting to console socket {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("creating the pty: {0}")]
    Pty(nix::Error),
    #[error("opening pty slave {0}: {1}")]
    Slave(String, nix::Error),
    #[error("making {0} the console: {1}")]
    Console(&'static str, nix::Error),
    #[error("sending the pty master to the console socket: {0}")]
    Send(nix::Error),
}

/// The socket a terminal process's pty master is sent to: an already connected one, or
/// the path of one to connect to. None when the process has no terminal.
pub fn console_socket_for(
    terminal: bool,
    connected: Option<&OwnedFd>,
    path: Option<&Path>,
) -> Result<Option<OwnedFd>, ConsoleError> {
    if !terminal {
        return Ok(None);
    }
    if let Some(fd) = connected {
        return fd.try_clone().map(Some).map_err(|e| ConsoleError::Connect("(connected socket)".into(), e));
    }
    match path {
        Some(path) => connect(path).map(Some),
        None => Err(ConsoleError::Missing),
    }
}

/// Connects to the caller's console socket (in the runtime's mount namespace).
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    let stream = UnixStream::connect(path).map_err(|e| ConsoleError::Connect(path.into(), e))?;
    Ok(stream.into())
}

/// In the container process after entering its root: creates the pty, binds the
/// slave on /dev/console when `bind_console`, sends the master, and makes the slave
/// the controlling terminal and stdio.
pub fn setup(socket: &OwnedFd, size: Option<(u16, u16)>, bind_console: bool) -> Result<(), ConsoleError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(ConsoleError::Pty)?;
    grantpt(&master).map_err(ConsoleError::Pty)?;
    unlockpt(&master).map_err(ConsoleError::Pty)?;
    let slave_path = ptsname_r(&master).map_err(ConsoleError::Pty)?;
    let slave = nix::fcntl::open(slave_path.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, nix::sys::stat::Mode::empty())
        .map_err(|e| ConsoleError::Slave(slave_path.clone(), e))?;
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some((rows, cols)) = size {
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
    if bind_console {
        bind_dev_console(&slave_path)?;
    }
    send_fd(socket, master.as_raw_fd(), &slave_path)?;
    drop(master);
    make_controlling_terminal(&slave)
}

fn bind_dev_console(slave_path: &str) -> Result<(), ConsoleError> {
    use nix::mount::{mount, MsFlags};
    let console = Path::new("/dev/console");
    if !console.exists() {
        let _ = std::fs::File::create(console);
    }
    mount(Some(slave_path), console, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| ConsoleError::Console("/dev/console", e))
}

fn send_fd(socket: &OwnedFd, fd: RawFd, name: &str) -> Result<(), ConsoleError> {
    let fds = [fd];
    let control = [ControlMessage::ScmRights(&fds)];
    let payload = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &payload, &control, MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(ConsoleError::Send)
}

fn make_controlling_terminal(slave: &OwnedFd) -> Result<(), ConsoleError> {
    nix::unistd::setsid().map_err(|e| ConsoleError::Console("setsid", e))?;
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(ConsoleError::Console("the controlling terminal", nix::Error::last()));
    }
    for target in 0..=2 {
        nix::unistd::dup2(slave.as_raw_fd(), target).map_err(|e| ConsoleError::Console("stdio", e))?;
    }
    Ok(())
}
