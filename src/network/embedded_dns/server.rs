//! The serving loop of one sandbox: UDP datagrams and TCP connections on its two
//! sockets, each query answered on a task of its own so that a slow upstream holds up
//! nobody else. All of it is one task on the daemon's runtime; aborting it (when the
//! [`Server`] is dropped) drops the sockets and every query and connection task.
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::answer::{Resolver, Transport};
use super::forward::{read_framed, write_framed};
use super::socket::Sockets;

/// The largest UDP query accepted (EDNS0 clients advertise up to 4096).
const MAX_UDP_QUERY: usize = 4096;
/// Queries and connections in flight per sandbox; a sandbox flooding its server has
/// further queries dropped (clients retry) rather than tying up the daemon.
const MAX_IN_FLIGHT: usize = 256;
/// An idle TCP client is dropped after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// A running server; serving stops when it is dropped.
pub(crate) struct Server {
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) fn start(sockets: Sockets, resolver: Resolver) -> Server {
        let task = tokio::spawn(serve(Arc::new(sockets.udp), sockets.tcp, Arc::new(resolver)));
        Server { task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(udp: Arc<UdpSocket>, tcp: TcpListener, resolver: Arc<Resolver>) {
    let mut queries = JoinSet::new();
    let mut buffer = vec![0u8; MAX_UDP_QUERY];
    loop {
        tokio::select! {
            received = udp.recv_from(&mut buffer) => match received {
                Ok(_) if queries.len() >= MAX_IN_FLIGHT => tracing::debug!("embedded DNS: too many queries in flight, one dropped"),
                Ok((length, client)) => {
                    let (udp, resolver, query) = (udp.clone(), resolver.clone(), buffer[..length].to_vec());
                    queries.spawn(async move {
                        if let Some(answer) = resolver.answer(&query, Transport::Udp).await {
                            let _ = udp.send_to(&answer, client).await;
                        }
                    });
                }
                Err(error) => {
                    tracing::debug!(%error, "embedded DNS: udp receive");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            accepted = tcp.accept() => match accepted {
                Ok(_) if queries.len() >= MAX_IN_FLIGHT => tracing::debug!("embedded DNS: too many connections, one refused"),
                Ok((stream, _)) => {
                    queries.spawn(serve_connection(stream, resolver.clone()));
                }
                Err(error) => {
                    tracing::debug!(%error, "embedded DNS: tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = queries.join_next(), if !queries.is_empty() => {}
        }
    }
}

/// Queries on one TCP connection, answered in order, until the client closes or idles.
async fn serve_connection(mut stream: TcpStream, resolver: Arc<Resolver>) {
    while let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
        let Some(answer) = resolver.answer(&query, Transport::Tcp).await else { return };
        if write_framed(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}
