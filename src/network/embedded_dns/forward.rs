//! Forwarding of names the table does not know to upstream resolvers: the sandbox's own
//! DNS servers (`--dns`) or else the host's, loopback ones included (the sockets are
//! made on the daemon's runtime, in the daemon's namespace, where those are reachable).
//! UDP first with a timeout, each server in turn; TCP when the client asked over TCP or
//! the UDP answer came back truncated.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::super::dns::{parse_resolv_conf, DnsConfig};
use super::ADDRESS;

/// How long one upstream server gets to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The largest DNS message (the TCP length prefix is 16 bits).
const MAX_MESSAGE: usize = 65535;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Upstreams {
    pub servers: Vec<SocketAddr>,
}

fn server_addresses(servers: &[String]) -> Vec<SocketAddr> {
    let parsed = servers.iter().filter_map(|s| s.parse::<IpAddr>().ok());
    parsed.filter(|ip| *ip != IpAddr::V4(ADDRESS) && !ip.is_unspecified()).map(|ip| SocketAddr::new(ip, 53)).collect()
}

impl Upstreams {
    /// The sandbox's servers when it names any, else those of `host_resolv_conf`.
    pub(crate) fn choose(own: Option<&DnsConfig>, host_resolv_conf: &Path) -> Upstreams {
        let own = own.map(|d| server_addresses(&d.servers)).unwrap_or_default();
        if !own.is_empty() {
            return Upstreams { servers: own };
        }
        let host = parse_resolv_conf(&std::fs::read_to_string(host_resolv_conf).unwrap_or_default());
        Upstreams { servers: server_addresses(&host.servers) }
    }

    /// The upstream answer to `query` (raw bytes, relayed unchanged), or None when no
    /// server answered. `max_udp`: the most the client takes over UDP; None: TCP client.
    pub(crate) async fn forward(&self, query: &[u8], max_udp: Option<usize>) -> Option<Vec<u8>> {
        for server in &self.servers {
            match self.ask(*server, query, max_udp).await {
                Ok(answer) => return Some(answer),
                Err(error) => tracing::debug!(%server, %error, "embedded DNS: upstream did not answer"),
            }
        }
        None
    }

    async fn ask(&self, server: SocketAddr, query: &[u8], max_udp: Option<usize>) -> std::io::Result<Vec<u8>> {
        let Some(max_udp) = max_udp else { return ask_tcp(server, query).await };
        let answer = ask_udp(server, query).await?;
        if !is_truncated(&answer) {
            return Ok(answer);
        }
        match ask_tcp(server, query).await {
            Ok(full) if full.len() <= max_udp => Ok(full),
            _ => Ok(answer),
        }
    }
}

fn is_truncated(message: &[u8]) -> bool {
    message.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")
}

async fn ask_udp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let exchange = async {
        loop {
            let length = socket.recv(&mut buffer).await?;
            // An answer to another query (same 16-bit id or nothing) is ignored.
            if length >= 2 && buffer[..2] == query[..2] {
                return Ok::<_, std::io::Error>(length);
            }
        }
    };
    let length = tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| timed_out())??;
    buffer.truncate(length);
    Ok(buffer)
}

async fn ask_tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        write_framed(&mut stream, query).await?;
        read_framed(&mut stream).await
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| timed_out())?
}

/// One DNS message over TCP: a two-byte length, then the message.
pub(crate) async fn read_framed<S: AsyncReadExt + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let length = stream.read_u16().await? as usize;
    let mut message = vec![0u8; length];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

pub(crate) async fn write_framed<S: AsyncWriteExt + Unpin>(stream: &mut S, message: &[u8]) -> std::io::Result<()> {
    let length = u16::try_from(message.len()).map_err(|_| std::io::Error::other("DNS message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_servers_win_and_loopback_host_servers_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("resolv.conf");
        std::fs::write(&host, "nameserver 127.0.0.53\nnameserver 127.0.0.11\nnameserver bogus\n").unwrap();
        let own = DnsConfig { servers: vec!["10.0.0.2".into()], ..Default::default() };
        assert_eq!(Upstreams::choose(Some(&own), &host).servers, vec!["10.0.0.2:53".parse().unwrap()]);
        assert_eq!(Upstreams::choose(None, &host).servers, vec!["127.0.0.53:53".parse().unwrap()], "itself is never an upstream");
        assert!(Upstreams::choose(None, &dir.path().join("absent")).servers.is_empty());
    }
}
