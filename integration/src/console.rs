//! A `--console-socket` receiver: a unix socket that accepts one connection, takes the
//! pty master sent over SCM_RIGHTS and reads everything the container writes to it.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening console socket; `output` returns what the container wrote to its tty.
pub struct ConsoleSocket {
    path: PathBuf,
    rx: mpsc::Receiver<Result<String, String>>,
}

impl ConsoleSocket {
    /// Listens at `dir/console.sock`.
    pub fn new(dir: &Path) -> ConsoleSocket {
        let path = dir.join(format!("console-{}.sock", crate::tempdir::unique_name("c")));
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(receive(listener));
        });
        ConsoleSocket { path, rx }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Everything read from the pty master until the container side closed it.
    #[track_caller]
    pub fn output(&self, timeout: Duration) -> String {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("console socket: {e}"),
            Err(_) => panic!("console socket: no tty output finished within {timeout:?}"),
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn receive(listener: UnixListener) -> Result<String, String> {
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let master = receive_fd(std::os::fd::AsRawFd::as_raw_fd(&stream))?;
    let mut file = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read pty master: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn receive_fd(sock: RawFd) -> Result<OwnedFd, String> {
    let mut name = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::empty())
        .map_err(|e| format!("recvmsg: {e}"))?;
    for cmsg in msg.cmsgs().map_err(|e| format!("cmsgs: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("no fd received over SCM_RIGHTS".to_string())
}
