//! A tiny upstream DNS server for tests, over UDP and TCP on a socket the caller binds
//! (in whatever namespace it chooses): A queries for the names it was given are
//! answered, anything else gets NXDOMAIN. It counts the queries it saw, so a test can
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

fn answer(query: &[u8], names: &Names) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries.first()?.clone();
    let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let found = names.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
    let mut reply = Message::error_msg(request.metadata.id, request.metadata.op_code, ResponseCode::NoError);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    match (found, question.query_type()) {
        (Some(ip), RecordType::A) => {
            reply.add_answer(Record::from_rdata(question.name().clone(), 60, RData::A(A(ip))));
        }
        (Some(_), _) => {}
        (None, _) => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.to_vec().ok()
}

impl DnsResponder {
    /// Serves `names` (lower case, no trailing dot) on the bound sockets.
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
                    if let Some(reply) = answer(&buffer[..length], &names) {
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
    let reply = answer(&query, names).ok_or_else(|| std::io::Error::other("bad query"))?;
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

/// A DNS query over TCP to `server` from a socket made inside the network namespace
/// at `netns` (on a thread of its own): the answer's code and A addresses.
pub fn query_tcp(netns: &str, server: &str, name: &str) -> std::io::Result<(ResponseCode, Vec<Ipv4Addr>)> {
    let (netns, server, name) = (netns.to_string(), server.to_string(), name.to_string());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut stream = std::net::TcpStream::connect((server.as_str(), 53))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut query = Message::query();
        let parsed = hickory_proto::rr::Name::from_ascii(&name).map_err(std::io::Error::other)?;
        query.add_query(hickory_proto::op::Query::query(parsed, RecordType::A));
        query.metadata.recursion_desired = true;
        let bytes = query.to_vec().map_err(std::io::Error::other)?;
        stream.write_all(&(bytes.len() as u16).to_be_bytes())?;
        stream.write_all(&bytes)?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length)?;
        let mut reply = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut reply)?;
        let reply = Message::from_vec(&reply).map_err(std::io::Error::other)?;
        let ips = reply.answers.iter().filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        });
        Ok((reply.metadata.response_code, ips.collect()))
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Sends `count` A queries for `name`, one after the other, over UDP to `server` from
/// inside the namespace at `netns`; the time each took to be answered.
pub fn time_udp_queries(netns: &str, server: &str, name: &str, count: usize) -> std::io::Result<Vec<Duration>> {
    let (netns, server, name) = (netns.to_string(), server.to_string(), name.to_string());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect((server.as_str(), 53))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let parsed = hickory_proto::rr::Name::from_ascii(&name).map_err(std::io::Error::other)?;
        let mut query = Message::query();
        query.add_query(hickory_proto::op::Query::query(parsed, RecordType::A));
        let bytes = query.to_vec().map_err(std::io::Error::other)?;
        let mut buffer = [0u8; 4096];
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let start = std::time::Instant::now();
            socket.send(&bytes)?;
            socket.recv(&mut buffer)?;
            times.push(start.elapsed());
        }
        Ok(times)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
