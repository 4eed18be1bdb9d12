//! Where port forwarding connects: a ready pod's network namespace (or, for a pod on
//! the host's network, berthd's own), and a TCP connection to a port on its loopback.
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

impl Core {
    /// Where a pod's ports are: its pinned network namespace, or `None` for a pod on
    /// the host's network.
    pub fn pod_network(&self, namespace: &str, pod_id: &str) -> CoreResult<Option<PathBuf>> {
        let sandbox = self.sandbox(namespace, pod_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(CoreError::FailedPrecondition(format!("pod {} is not ready", sandbox.id)));
        }
        Ok(sandbox.netns.map(PathBuf::from))
    }
}

/// Connects to `port` on the loopback of a network namespace (`None`: this process's).
/// The socket is made on a short-lived thread that entered the namespace, so it
/// belongs there; the thread ends right after.
pub async fn connect_in_netns(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("berth-portfwd".into()).spawn(move || {
        let _ = reply.send(connect_blocking(netns.as_deref(), port));
    })?;
    let stream = answer.await.map_err(|_| std::io::Error::other("the connecting thread failed"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

fn connect_blocking(netns: Option<&Path>, port: u16) -> std::io::Result<std::net::TcpStream> {
    if let Some(netns) = netns {
        let file = std::fs::File::open(netns)?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    }
    let timeout = Duration::from_secs(5);
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&v4, timeout) {
        Ok(stream) => Ok(stream),
        Err(error) => std::net::TcpStream::connect_timeout(&std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), timeout).map_err(|_| error),
    }
}
