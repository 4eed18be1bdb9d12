//! One query in, one answer out: A queries for names in the sandbox's table are
//! answered here, AAAA for them with an empty NOERROR (peers have IPv4 only), PTR for
//! their addresses with their qualified name; anything else goes upstream, and with no
//! upstream answering the client gets SERVFAIL. The wire format is hickory-proto's.
use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::forward::Upstreams;
use super::names::NameTable;
use crate::store::Store;

/// Docker's TTL for container names.
const TTL: u32 = 600;

/// What a sandbox's server needs to answer its queries.
pub(crate) struct Resolver {
    pub store: Store,
    pub sandbox_id: String,
    /// Search domains of the sandbox's resolv.conf, stripped from queried names.
    pub searches: Vec<String>,
    pub upstreams: Upstreams,
}

/// How the query came, which decides how the answer may be sent and fetched.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

enum Local {
    Answers(Vec<Record>),
    Unknown,
}

impl Resolver {
    pub(crate) async fn answer(self: &Arc<Self>, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(query) {
            Ok(request) => request,
            Err(_) if query.len() >= 2 => {
                let id = u16::from_be_bytes([query[0], query[1]]);
                return encode(Message::error_msg(id, OpCode::Query, ResponseCode::FormErr));
            }
            Err(_) => return None,
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let local = match (request.metadata.op_code, request.queries.as_slice()) {
            (OpCode::Query, [question]) => self.local(question),
            _ => return encode(reply(&request, ResponseCode::NotImp, Vec::new())),
        };
        match local {
            Local::Answers(records) => encode(reply(&request, ResponseCode::NoError, records)),
            Local::Unknown => self.upstream(&request, query, transport).await,
        }
    }

    fn local(&self, question: &Query) -> Local {
        let table = match NameTable::load(&self.store, &self.sandbox_id) {
            Ok(table) => table,
            Err(error) => {
                tracing::warn!(sandbox_id = %self.sandbox_id, %error, "embedded DNS: reading the names");
                return Local::Unknown;
            }
        };
        let name = question.name();
        match question.query_type() {
            RecordType::A | RecordType::AAAA => {
                let ips = table.lookup(&name.to_ascii(), &self.searches);
                match (ips.is_empty(), question.query_type()) {
                    (true, _) => Local::Unknown,
                    (false, RecordType::AAAA) => Local::Answers(Vec::new()),
                    (false, _) => Local::Answers(ips.into_iter().map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))).collect()),
                }
            }
            RecordType::PTR => match reverse_ip(name).and_then(|ip| table.reverse(ip).map(str::to_string)) {
                Some(peer) => match Name::from_ascii(format!("{peer}.")) {
                    Ok(target) => Local::Answers(vec![Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(target)))]),
                    Err(_) => Local::Unknown,
                },
                None => Local::Unknown,
            },
            _ => Local::Unknown,
        }
    }

    async fn upstream(&self, request: &Message, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let max_udp = match transport {
            Transport::Udp => Some(request.max_payload() as usize),
            Transport::Tcp => None,
        };
        match self.upstreams.forward(query, max_udp).await {
            Some(answer) => Some(answer),
            None => encode(reply(request, ResponseCode::ServFail, Vec::new())),
        }
    }
}

/// The IPv4 address of an `in-addr.arpa.` name.
fn reverse_ip(name: &Name) -> Option<Ipv4Addr> {
    match name.parse_arpa_name().ok()? {
        ipnet::IpNet::V4(net) if net.prefix_len() == 32 => Some(net.addr()),
        _ => None,
    }
}

fn reply(request: &Message, code: ResponseCode, answers: Vec<Record>) -> Message {
    let mut message = Message::error_msg(request.metadata.id, request.metadata.op_code, code);
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    message.metadata.recursion_available = true;
    message.add_queries(request.queries.iter().cloned());
    message.add_answers(answers);
    message
}

fn encode(message: Message) -> Option<Vec<u8>> {
    match message.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::warn!(%error, "embedded DNS: encoding an answer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::error::NetworkError;
    use crate::network::records::{NetworkRecord, ENDPOINTS, NETWORKS};

    /// Sandbox alpha (alias db) alone on user network app, with no upstream server.
    fn resolver(dir: &std::path::Path) -> Arc<Resolver> {
        let store = Store::open(&dir.join("meta.redb")).unwrap();
        let network = NetworkRecord::for_tests("app");
        let alpha = super::super::names::tests::endpoint("alpha", "app", [10, 1, 0, 2], &["db"]);
        store
            .write(|txn| {
                txn.put(NETWORKS, "app", &network)?;
                txn.put(ENDPOINTS, "alpha/app", &alpha)?;
                Ok::<_, NetworkError>(())
            })
            .unwrap();
        Arc::new(Resolver { store, sandbox_id: "alpha".into(), searches: Vec::new(), upstreams: Upstreams::default() })
    }

    fn ask(resolver: &Arc<Resolver>, query: &[u8]) -> Message {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let answer = runtime.block_on(resolver.answer(query, Transport::Udp)).expect("an answer");
        Message::from_vec(&answer).unwrap()
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    #[test]
    fn known_names_are_answered_and_the_rest_fails_without_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = resolver(dir.path());
        let request = query("db.", RecordType::A);
        let reply = ask(&resolver, &request);
        assert_eq!(reply.metadata.id, u16::from_be_bytes([request[0], request[1]]));
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data, RData::A(A(Ipv4Addr::new(10, 1, 0, 2))));
        let reply = ask(&resolver, &query("alpha.app.", RecordType::AAAA));
        assert_eq!((reply.metadata.response_code, reply.answers.len()), (ResponseCode::NoError, 0));
        let reply = ask(&resolver, &query("2.0.1.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(reply.answers[0].data, RData::PTR(PTR(Name::from_ascii("alpha.app.").unwrap())));
        let reply = ask(&resolver, &query("example.org.", RecordType::A));
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail, "no upstream");
        let reply = ask(&resolver, &[0x12, 0x34, 0xff]);
        assert_eq!((reply.metadata.id, reply.metadata.response_code), (0x1234, ResponseCode::FormErr));
    }
}
