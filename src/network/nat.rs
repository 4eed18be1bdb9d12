//! berth's nftables ruleset, derived from the networks and the published ports of the
//! live endpoints and replaced as a whole in one transaction on every change, so the
//! kernel always holds exactly the rules the state asks for (no duplicates, no
//! leftovers, also after a crash and restart).
//!
//! - masquerade: traffic from a bridge subnet leaving through another interface;
//! - port mappings: DNAT in prerouting (other hosts, containers) and output (the host
//!   itself, 127.0.0.1 included: the bridges get `route_localnet`, and traffic from
//!   127.0.0.0/8 out of a bridge is masqueraded);
//! - hairpin: DNATed traffic from a bridge's own subnet back into that bridge is
//!   masqueraded, so a container reaches its own (and its neighbours') published ports;
//! - isolation: forwarding between two different berth bridges is dropped;
//! - internal networks: no masquerade, and nothing forwarded into or out of their bridge.
use ipnet::Ipv4Net;

use super::error::Result;
use super::nft::{Batch, Chain, Hook, Rule};
use super::records::{EndpointRecord, NetworkRecord, Protocol};

const CHAINS: [Chain; 4] = [
    Chain { name: "prerouting", kind: "nat", hook: Hook::Prerouting, priority: -100 },
    Chain { name: "output", kind: "nat", hook: Hook::Output, priority: -100 },
    Chain { name: "postrouting", kind: "nat", hook: Hook::Postrouting, priority: 100 },
    Chain { name: "forward", kind: "filter", hook: Hook::Forward, priority: 0 },
];

fn loopback() -> Ipv4Net {
    Ipv4Net::new(std::net::Ipv4Addr::new(127, 0, 0, 0), 8).unwrap_or_default()
}

/// Replaces the table `table` with the rules for `networks` and `endpoints`.
pub(crate) fn apply(table: &str, networks: &[NetworkRecord], endpoints: &[EndpointRecord]) -> Result<()> {
    let mut batch = Batch::new();
    batch.add_table(table);
    batch.delete_table(table);
    batch.add_table(table);
    for chain in &CHAINS {
        batch.add_chain(table, chain);
    }
    for rule in rules(networks, endpoints) {
        batch.add_rule(table, rule);
    }
    batch.commit()
}

fn rules(networks: &[NetworkRecord], endpoints: &[EndpointRecord]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for network in networks {
        rules.extend(network_rules(network));
        for other in networks.iter().filter(|o| o.bridge != network.bridge) {
            rules.push(Rule::new("forward").iifname(true, &network.bridge).oifname(true, &other.bridge).drop());
        }
    }
    for endpoint in endpoints {
        rules.extend(port_rules(endpoint));
    }
    rules
}

fn network_rules(network: &NetworkRecord) -> Vec<Rule> {
    let bridge = network.bridge.as_str();
    if network.internal {
        return vec![
            Rule::new("forward").iifname(true, bridge).oifname(false, bridge).drop(),
            Rule::new("forward").oifname(true, bridge).iifname(false, bridge).drop(),
        ];
    }
    vec![
        Rule::new("postrouting").saddr_in(network.subnet).oifname(false, bridge).masquerade(),
        Rule::new("postrouting").oifname(true, bridge).saddr_in(network.subnet).was_dnatted().masquerade(),
        Rule::new("postrouting").oifname(true, bridge).saddr_in(loopback()).masquerade(),
    ]
}

fn port_rules(endpoint: &EndpointRecord) -> Vec<Rule> {
    let mut rules = Vec::new();
    for mapping in &endpoint.port_mappings {
        let l4proto = match mapping.protocol {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        };
        for chain in ["prerouting", "output"] {
            let rule = match mapping.host_ip {
                Some(ip) if !ip.is_unspecified() => Rule::new(chain).daddr_is(ip),
                _ => Rule::new(chain).daddr_is_local(),
            };
            rules.push(rule.dport(l4proto, mapping.host_port).dnat(endpoint.ip, mapping.container_port));
        }
    }
    rules
}
