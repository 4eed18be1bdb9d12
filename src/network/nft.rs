//! A small nf_tables client: encodes tables, chains and rules as nfnetlink messages and
//! commits them in one batch (one kernel transaction) over a NETLINK_NETFILTER socket.
//! Only the expressions berth's rules use are here: meta, payload, bitwise, cmp, fib,
//! ct, immediate, nat and masq. The socket belongs to the calling thread's netns.
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;

use ipnet::Ipv4Net;

use super::error::{NetworkError, Result};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
/// The verdict code of `jump` (NFT_JUMP, -3).
const NFT_JUMP: u32 = -3i32 as u32;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 1 << 15;
const NFPROTO_INET: u8 = 1;
const NLMSG_ERROR: u16 = 2;

/// Netfilter hooks of the inet family.
#[derive(Clone, Copy)]
pub(crate) enum Hook {
    Prerouting = 0,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// A base chain of berth's table.
pub(crate) struct Chain {
    pub name: &'static str,
    pub kind: &'static str,
    pub hook: Hook,
    pub priority: i32,
}

/// Netlink attributes being written into a buffer.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn bytes(mut self, kind: u16, value: &[u8]) -> Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    fn string(self, kind: u16, value: &str) -> Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.bytes(kind, &bytes)
    }
    fn be32(self, kind: u16, value: u32) -> Self {
        self.bytes(kind, &value.to_be_bytes())
    }
    fn nested(self, kind: u16, inner: Attrs) -> Self {
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }
}

/// `NFTA_DATA_VALUE` wrapped, as cmp, bitwise and immediate take their constants.
fn data(value: &[u8]) -> Attrs {
    Attrs::default().bytes(1, value)
}

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;

/// One rule: a chain and its expressions, in order.
pub(crate) struct Rule {
    chain: String,
    expressions: Attrs,
}

impl Rule {
    pub fn new(chain: impl Into<String>) -> Rule {
        Rule { chain: chain.into(), expressions: Attrs::default() }
    }

    fn expr(mut self, name: &str, body: Attrs) -> Rule {
        let element = Attrs::default().string(1, name).nested(2, body);
        self.expressions = self.expressions.nested(1, element);
        self
    }

    fn meta(self, key: u32) -> Rule {
        self.expr("meta", Attrs::default().be32(1, REG_1).be32(2, key))
    }

    fn cmp(self, equal: bool, value: &[u8]) -> Rule {
        let op = if equal { 0 } else { 1 };
        self.expr("cmp", Attrs::default().be32(1, REG_1).be32(2, op).nested(3, data(value)))
    }

    fn payload(self, base: u32, offset: u32, len: u32) -> Rule {
        let body = Attrs::default().be32(1, REG_1).be32(2, base).be32(3, offset).be32(4, len);
        self.expr("payload", body)
    }

    fn bitwise(self, mask: &[u8]) -> Rule {
        let xor = vec![0u8; mask.len()];
        let body = Attrs::default()
            .be32(1, REG_1)
            .be32(2, REG_1)
            .be32(3, mask.len() as u32)
            .nested(4, data(mask))
            .nested(5, data(&xor));
        self.expr("bitwise", body)
    }

    fn immediate(self, register: u32, value: &[u8]) -> Rule {
        self.expr("immediate", Attrs::default().be32(1, register).nested(2, data(value)))
    }

    fn verdict(self, code: u32) -> Rule {
        let verdict = Attrs::default().nested(2, Attrs::default().be32(1, code));
        self.expr("immediate", Attrs::default().be32(1, REG_VERDICT).nested(2, verdict))
    }

    fn interface(self, key: u32, equal: bool, name: &str) -> Rule {
        let mut bytes = name.as_bytes().to_vec();
        bytes.push(0);
        self.meta(key).cmp(equal, &bytes)
    }

    /// `iifname [!=] name`
    pub fn iifname(self, equal: bool, name: &str) -> Rule {
        self.interface(6, equal, name)
    }

    /// `oifname [!=] name`
    pub fn oifname(self, equal: bool, name: &str) -> Rule {
        self.interface(7, equal, name)
    }

    fn ipv4(self) -> Rule {
        self.meta(15).cmp(true, &[2])
    }

    /// `ip saddr net` (offset 12) or `ip daddr net` (offset 16).
    fn address_in(self, offset: u32, net: Ipv4Net) -> Rule {
        let rule = self.ipv4().payload(1, offset, 4);
        let rule = if net.prefix_len() < 32 { rule.bitwise(&net.netmask().octets()) } else { rule };
        rule.cmp(true, &net.network().octets())
    }

    pub fn saddr_in(self, net: Ipv4Net) -> Rule {
        self.address_in(12, net)
    }

    pub fn daddr_is(self, ip: Ipv4Addr) -> Rule {
        self.address_in(16, Ipv4Net::from(ip))
    }

    /// `meta l4proto tcp|udp th dport port`
    pub fn dport(self, l4proto: u8, port: u16) -> Rule {
        self.meta(16).cmp(true, &[l4proto]).payload(2, 2, 2).cmp(true, &port.to_be_bytes())
    }

    /// `fib daddr type local`
    pub fn daddr_is_local(self) -> Rule {
        let fib = Attrs::default().be32(1, REG_1).be32(2, 3).be32(3, 1 << 1);
        self.expr("fib", fib).cmp(true, &2u32.to_ne_bytes())
    }

    /// `ct status dnat`
    pub fn was_dnatted(self) -> Rule {
        let ct = Attrs::default().be32(1, REG_1).be32(2, 2);
        self.expr("ct", ct).bitwise(&(1u32 << 5).to_ne_bytes()).cmp(false, &0u32.to_ne_bytes())
    }

    pub fn masquerade(self) -> Rule {
        self.expr("masq", Attrs::default())
    }

    /// `dnat ip to ip:port`
    pub fn dnat(self, ip: Ipv4Addr, port: u16) -> Rule {
        let nat = Attrs::default().be32(1, 1).be32(2, 2).be32(3, REG_1).be32(5, REG_2);
        self.immediate(REG_1, &ip.octets()).immediate(REG_2, &port.to_be_bytes()).expr("nat", nat)
    }

    pub fn drop(self) -> Rule {
        self.verdict(0)
    }

    /// `jump chain`
    pub fn jump(self, chain: &str) -> Rule {
        let verdict = Attrs::default().nested(2, Attrs::default().be32(1, NFT_JUMP).string(2, chain));
        self.expr("immediate", Attrs::default().be32(1, REG_VERDICT).nested(2, verdict))
    }
}

/// Messages of one nf_tables transaction.
pub(crate) struct Batch {
    buffer: Vec<u8>,
    seq: u32,
}

impl Batch {
    pub fn new() -> Batch {
        let mut batch = Batch { buffer: Vec::with_capacity(4096), seq: 0 };
        batch.message(NFNL_MSG_BATCH_BEGIN, 0, 0, Attrs::default());
        batch
    }

    fn message(&mut self, kind: u16, flags: u16, family: u8, attrs: Attrs) {
        let len = 16 + 4 + attrs.0.len();
        let res_id = if kind >= NFNL_MSG_BATCH_BEGIN { NFNL_SUBSYS_NFTABLES } else { 0 };
        let kind = if kind >= NFNL_MSG_BATCH_BEGIN { kind } else { (NFNL_SUBSYS_NFTABLES << 8) | kind };
        self.seq += 1;
        let b = &mut self.buffer;
        b.extend_from_slice(&(len as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(&self.seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&[family, 0]);
        b.extend_from_slice(&res_id.to_be_bytes());
        b.extend_from_slice(&attrs.0);
    }

    /// Adds the table (a no-op when it exists).
    pub fn add_table(&mut self, table: &str) {
        let attrs = Attrs::default().string(1, table);
        self.message(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK, NFPROTO_INET, attrs);
    }

    pub fn delete_table(&mut self, table: &str) {
        let attrs = Attrs::default().string(1, table);
        self.message(NFT_MSG_DELTABLE, NLM_F_ACK, NFPROTO_INET, attrs);
    }

    pub fn add_chain(&mut self, table: &str, chain: &Chain) {
        let hook = Attrs::default().be32(1, chain.hook as u32).be32(2, chain.priority as u32);
        let attrs = Attrs::default()
            .string(1, table)
            .string(3, chain.name)
            .nested(4, hook)
            .string(7, chain.kind);
        self.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK, NFPROTO_INET, attrs);
    }

    /// Adds a regular chain (no hook), a no-op when it exists.
    pub fn add_regular_chain(&mut self, table: &str, chain: &str) {
        let attrs = Attrs::default().string(1, table).string(3, chain);
        self.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK, NFPROTO_INET, attrs);
    }

    /// Deletes an empty chain that no rule jumps to (any more, in this batch).
    pub fn delete_chain(&mut self, table: &str, chain: &str) {
        let attrs = Attrs::default().string(1, table).string(3, chain);
        self.message(NFT_MSG_DELCHAIN, NLM_F_ACK, NFPROTO_INET, attrs);
    }

    /// Deletes every rule of `chain`.
    pub fn flush_chain(&mut self, table: &str, chain: &str) {
        let attrs = Attrs::default().string(1, table).string(2, chain);
        self.message(NFT_MSG_DELRULE, NLM_F_ACK, NFPROTO_INET, attrs);
    }

    pub fn add_rule(&mut self, table: &str, rule: Rule) {
        let attrs = Attrs::default()
            .string(1, table)
            .string(2, &rule.chain)
            .nested(4, rule.expressions);
        let flags = NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK;
        self.message(NFT_MSG_NEWRULE, flags, NFPROTO_INET, attrs);
    }

    /// Sends the batch and waits for the kernel to accept or refuse all of it.
    pub fn commit(mut self) -> Result<()> {
        let last = self.seq;
        self.message(NFNL_MSG_BATCH_END, 0, 0, Attrs::default());
        let socket = open_socket()?;
        send(socket.as_raw_fd(), &self.buffer, MsgFlags::empty())
            .map_err(|e| NetworkError::io("nftables send", e.into()))?;
        wait_for_acks(&socket, last)
    }
}

fn open_socket() -> Result<OwnedFd> {
    let socket = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
        .map_err(|e| NetworkError::io("nftables socket", e.into()))?;
    setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::new(10, 0))
        .map_err(|e| NetworkError::io("nftables socket timeout", e.into()))?;
    Ok(socket)
}

/// Reads acknowledgements until the one for `last` arrives; the first error wins.
fn wait_for_acks(socket: &OwnedFd, last: u32) -> Result<()> {
    let mut buffer = vec![0u8; 65536];
    loop {
        let n = recv(socket.as_raw_fd(), &mut buffer, MsgFlags::empty())
            .map_err(|e| NetworkError::io("nftables receive", e.into()))?;
        let mut at = 0usize;
        while at + 16 <= n {
            let word = |i: usize| u32::from_ne_bytes([buffer[i], buffer[i + 1], buffer[i + 2], buffer[i + 3]]);
            let len = word(at) as usize;
            let kind = u16::from_ne_bytes([buffer[at + 4], buffer[at + 5]]);
            let seq = word(at + 8);
            if kind == NLMSG_ERROR && at + 20 <= n {
                let code = word(at + 16) as i32;
                if code != 0 {
                    let error = std::io::Error::from_raw_os_error(-code);
                    return Err(NetworkError::Nftables(format!("message {seq} refused: {error}")));
                }
                if seq == last {
                    return Ok(());
                }
            }
            if len == 0 {
                break;
            }
            at += len.next_multiple_of(4);
        }
    }
}
