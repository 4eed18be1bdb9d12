//! The server's two sockets, bound to 127.0.0.11:53 inside a sandbox's network
//! namespace. A socket belongs to the namespace of the thread that created it, so they
//! are made on a short-lived thread that `setns`es there first, then handed to the
//! daemon's runtime, which serves them from its own (berthd's) namespace.
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use super::super::error::{NetworkError, Result};
use super::ADDRESS;

pub(crate) struct Sockets {
    pub udp: tokio::net::UdpSocket,
    pub tcp: tokio::net::TcpListener,
}

fn bind_here(netns_path: &Path) -> Result<(UdpSocket, TcpListener)> {
    let netns = std::fs::File::open(netns_path).map_err(|e| NetworkError::io(format!("open {}", netns_path.display()), e))?;
    nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let address = SocketAddr::from((ADDRESS, 53));
    let context = |proto: &str| format!("bind {proto} {address} in {}", netns_path.display());
    let udp = UdpSocket::bind(address).map_err(|e| NetworkError::io(context("udp"), e))?;
    let tcp = TcpListener::bind(address).map_err(|e| NetworkError::io(context("tcp"), e))?;
    for result in [udp.set_nonblocking(true), tcp.set_nonblocking(true)] {
        result.map_err(|e| NetworkError::io("set a DNS socket non-blocking", e))?;
    }
    Ok((udp, tcp))
}

/// Binds both sockets in the namespace at `netns_path`; must run inside a tokio runtime.
pub(crate) async fn bind_in(netns_path: &Path) -> Result<Sockets> {
    let path: PathBuf = netns_path.to_path_buf();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = sender.send(bind_here(&path));
    });
    let (udp, tcp) = receiver.await.map_err(|_| NetworkError::io("the DNS socket thread", std::io::Error::other("died")))??;
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(|e| NetworkError::io("register the DNS udp socket", e))?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| NetworkError::io("register the DNS tcp socket", e))?;
    Ok(Sockets { udp, tcp })
}
