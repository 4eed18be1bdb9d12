//! A tiny upstream DNS server for tests, over UDP and TCP on a socket the caller binds
//! (in whatever namespace it chooses): A queries for the names it was given are
//! answered (over UDP truncated beyond 512 bytes), anything else gets NXDOMAIN. It counts the queries it saw, so a test can
//! tell a forwarded answer from a local one. Stops on drop.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

pub struct DnsResponder {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

type Names = Arc<Vec<(String, Ipv4Addr)>>;

/// The answer to `query`; over UDP (`udp`) one larger than 512 bytes is truncated, as a
/// server without EDNS sends it.
fn answer(query: &[u8], names: &Names, udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries.first()?.clone();
    let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let found: Vec<Ipv4Addr> = names.iter().filter(|(n, _)| *n == name).map(|(_, ip)| *ip).collect();
    let mut reply = Message::error_msg(request.metadata.id, request.metadata.op_code, ResponseCode::NoError);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    match (found.is_empty(), question.query_type()) {
        (false, RecordType::A) => {
            reply.add_answers(found.iter().map(|ip| Record::from_rdata(question.name().clone(), 60, RData::A(A(*ip)))));
        }
        (false, _) => {}
        (true, _) => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    let bytes = reply.to_vec().ok()?;
    match udp && bytes.len() > 512 {
        true => reply.truncate().to_vec().ok(),
        false => Some(bytes),
    }
}

impl DnsResponder {
    /// Serves `names` (lower case, no trailing dot) on the bound sockets.
    /// A name listed several times has several addresses.
    pub fn serve(udp: UdpSocket, tcp: TcpListener, names: &[(&str, Ipv4Addr)]) -> DnsResponder {
        let names: Names = Arc::new(names.iter().map(|(n, ip)| (n.to_string(), *ip)).collect());
        let (stop, queries) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        udp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp_thread = {
            let (stop, queries, names) = (stop.clone(), queries.clone(), names.clone());
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((length, client)) = udp.recv_from(&mut buffer) else { continue };
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(reply) = answer(&buffer[..length], &names, true) {
                        let _ = udp.send_to(&reply, client);
                    }
                }
            })
        };
        let tcp_thread = {
            let (stop, queries) = (stop.clone(), queries.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    let _ = serve_tcp(&mut stream, &names);
                }
            })
        };
        DnsResponder { stop, queries, threads: vec![udp_thread, tcp_thread] }
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

fn serve_tcp(stream: &mut std::net::TcpStream, names: &Names) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length)?;
    let mut query = vec![0u8; u16::from_be_bytes(length) as usize];
    stream.read_exact(&mut query)?;
    let reply = answer(&query, names, false).ok_or_else(|| std::io::Error::other("bad query"))?;
    stream.write_all(&(reply.len() as u16).to_be_bytes())?;
    stream.write_all(&reply)
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What a test looks at in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ResponseCode,
    pub truncated: bool,
    pub addresses: Vec<Ipv4Addr>,
}

/// Runs `work` on a thread of its own inside the network namespace at `netns`.
fn in_netns<T: Send + 'static>(netns: &str, work: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    let netns = netns.to_string();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        work()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// An A query for `name`, advertising `edns_size` bytes for UDP answers when given.
fn a_query(name: &str, edns_size: Option<u16>) -> std::io::Result<Vec<u8>> {
    let mut query = Message::query();
    let parsed = hickory_proto::rr::Name::from_ascii(name).map_err(std::io::Error::other)?;
    query.add_query(hickory_proto::op::Query::query(parsed, RecordType::A));
    query.metadata.recursion_desired = true;
    if let Some(size) = edns_size {
        query.set_edns(hickory_proto::op::Edns::new().set_max_payload(size).clone());
    }
    query.to_vec().map_err(std::io::Error::other)
}

fn summary(reply: &[u8]) -> std::io::Result<Reply> {
    let reply = Message::from_vec(reply).map_err(std::io::Error::other)?;
    let addresses = reply.answers.iter().filter_map(|r| match &r.data {
        RData::A(A(ip)) => Some(*ip),
        _ => None,
    });
    Ok(Reply { code: reply.metadata.response_code, truncated: reply.metadata.truncation, addresses: addresses.collect() })
}

/// An A query over TCP to `server`:53 from inside the namespace at `netns`.
pub fn query_tcp(netns: &str, server: &str, name: &str) -> std::io::Result<Reply> {
    let (server, query) = (server.to_string(), a_query(name, None)?);
    in_netns(netns, move || {
        let mut stream = std::net::TcpStream::connect((server.as_str(), 53))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(&(query.len() as u16).to_be_bytes())?;
        stream.write_all(&query)?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length)?;
        let mut reply = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut reply)?;
        summary(&reply)
    })
}

/// An A query over UDP to `server`:53 from inside the namespace at `netns`.
pub fn query_udp(netns: &str, server: &str, name: &str, edns_size: Option<u16>) -> std::io::Result<Reply> {
    let (server, query) = (server.to_string(), a_query(name, edns_size)?);
    in_netns(netns, move || {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect((server.as_str(), 53))?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        socket.send(&query)?;
        let mut buffer = vec![0u8; 65535];
        let length = socket.recv(&mut buffer)?;
        summary(&buffer[..length])
    })
}

/// Sends `count` A queries for `name`, one after the other, over UDP to `server` from
/// inside the namespace at `netns`; the time each took to be answered.
pub fn time_udp_queries(netns: &str, server: &str, name: &str, count: usize) -> std::io::Result<Vec<Duration>> {
    let (server, query) = (server.to_string(), a_query(name, None)?);
    in_netns(netns, move || {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect((server.as_str(), 53))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buffer = [0u8; 4096];
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let start = std::time::Instant::now();
            socket.send(&query)?;
            socket.recv(&mut buffer)?;
            times.push(start.elapsed());
        }
        Ok(times)
    })
}
