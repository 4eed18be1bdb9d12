//! Host port reservations: every published port is checked against the other
//! endpoints' mappings and then bound (not listened on) by berth, so that no other
//! process takes it while the mapping exists and a port another process already holds
//! is refused up front. DNAT moves the traffic before it could reach the socket.
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;

use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

use super::error::{NetworkError, Result};
use super::records::{EndpointRecord, PortMapping, Protocol};

/// Sockets holding the published ports, per sandbox.
#[derive(Default)]
pub(crate) struct PortReservations {
    held: HashMap<String, Vec<OwnedFd>>,
}

/// Two mappings clash when protocol and port agree and one host address covers the other.
fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    let unspecified = |m: &PortMapping| m.host_ip.is_none_or(|ip| ip.is_unspecified());
    a.protocol == b.protocol
        && a.host_port == b.host_port
        && (unspecified(a) || unspecified(b) || a.host_ip == b.host_ip)
}

/// Refuses mappings that clash with each other or with another sandbox's.
pub(crate) fn check_against(mappings: &[PortMapping], others: &[EndpointRecord]) -> Result<()> {
    for (i, mapping) in mappings.iter().enumerate() {
        if mapping.host_port == 0 || mapping.container_port == 0 {
            return Err(NetworkError::InvalidArgument("port mappings need a host and a container port".into()));
        }
        if mappings[..i].iter().any(|m| clash(m, mapping)) {
            return Err(NetworkError::Conflict(format!("host port {} is mapped twice", mapping.host_port)));
        }
        for other in others {
            if other.port_mappings.iter().any(|m| clash(m, mapping)) {
                return Err(NetworkError::Conflict(format!(
                    "host port {}/{:?} is already allocated to sandbox {}",
                    mapping.host_port, mapping.protocol, other.sandbox_id
                )));
            }
        }
    }
    Ok(())
}

impl PortReservations {
    /// Binds every mapping's port for `sandbox`; on failure nothing stays bound.
    pub fn reserve(&mut self, sandbox: &str, mappings: &[PortMapping]) -> Result<()> {
        let mut sockets = Vec::new();
        for mapping in mappings {
            sockets.push(bind_port(mapping)?);
        }
        if !sockets.is_empty() {
            self.held.entry(sandbox.to_string()).or_default().extend(sockets);
        }
        Ok(())
    }

    pub fn holds(&self, sandbox: &str) -> bool {
        self.held.contains_key(sandbox)
    }

    pub fn release(&mut self, sandbox: &str) {
        self.held.remove(sandbox);
    }
}

fn bind_port(mapping: &PortMapping) -> Result<OwnedFd> {
    let kind = match mapping.protocol {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)?;
    let ip = mapping.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let address = SockaddrIn::from(SocketAddrV4::new(ip, mapping.host_port));
    match bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &address) {
        Ok(()) => Ok(fd),
        Err(nix::errno::Errno::EADDRINUSE) => Err(NetworkError::Conflict(format!(
            "host port {ip}:{}/{:?} is in use by another process",
            mapping.host_port, mapping.protocol
        ))),
        Err(e) => Err(NetworkError::io(format!("bind {ip}:{}", mapping.host_port), e.into())),
    }
}
