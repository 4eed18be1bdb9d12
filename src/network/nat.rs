//! berth's nftables ruleset, derived from the networks and the published ports of the
//! live endpoints. The table is replaced as a whole, in one transaction, when berthd
//! starts and when a network comes or goes, so the kernel holds exactly the rules the
//! state asks for (no duplicates, no leftovers, also after a crash and restart). A
//! change of published ports is incremental: each endpoint with published ports has a
//! chain of its own (`ports-<veth>`) holding its DNAT rules, reached from the `ports`
//! chain (which prerouting and output jump to) by one jump per such endpoint; an
//! update remakes the changed endpoints' chains and the list of jumps, nothing else.
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

/// The chain that prerouting and output jump to: one jump per endpoint with ports.
const PORTS: &str = "ports";

/// Replaces the table `table` with the rules for `networks` and `endpoints`.
pub(crate) fn rebuild(table: &str, networks: &[NetworkRecord], endpoints: &[EndpointRecord]) -> Result<()> {
    let mut batch = Batch::new();
    batch.add_table(table);
    batch.delete_table(table);
    batch.add_table(table);
    for chain in &CHAINS {
        batch.add_chain(table, chain);
    }
    batch.add_regular_chain(table, PORTS);
    for base in ["prerouting", "output"] {
        batch.add_rule(table, Rule::new(base).jump(PORTS));
    }
    for rule in network_rules(networks) {
        batch.add_rule(table, rule);
    }
    set_endpoint_chains(&mut batch, table, endpoints);
    set_jumps(&mut batch, table, endpoints);
    batch.commit()
}

/// Programs the published ports of `added` endpoints and removes those of `removed`
/// ones; `endpoints` are every endpoint that exists now. Touches only the `ports`
/// chain and the changed endpoints' own chains.
pub(crate) fn update_ports(table: &str, endpoints: &[EndpointRecord], added: &[EndpointRecord], removed: &[EndpointRecord]) -> Result<()> {
    let mut batch = Batch::new();
    // An endpoint removed again before this update ran has no chain to make.
    let still_there: Vec<EndpointRecord> = added.iter().filter(|a| endpoints.iter().any(|e| e.host_veth == a.host_veth)).cloned().collect();
    set_endpoint_chains(&mut batch, table, &still_there);
    batch.flush_chain(table, PORTS);
    set_jumps(&mut batch, table, endpoints);
    for endpoint in removed.iter().filter(|e| publishes(e)) {
        let chain = endpoint_chain(endpoint);
        // Made first, so that deleting a chain already gone is not an error.
        batch.add_regular_chain(table, &chain);
        batch.flush_chain(table, &chain);
        batch.delete_chain(table, &chain);
    }
    batch.commit()
}

fn publishes(endpoint: &EndpointRecord) -> bool {
    !endpoint.port_mappings.is_empty()
}

fn endpoint_chain(endpoint: &EndpointRecord) -> String {
    format!("{PORTS}-{}", endpoint.host_veth)
}

/// Makes (or empties) each endpoint's chain and fills it with its DNAT rules.
fn set_endpoint_chains(batch: &mut Batch, table: &str, endpoints: &[EndpointRecord]) {
    for endpoint in endpoints.iter().filter(|e| publishes(e)) {
        let chain = endpoint_chain(endpoint);
        batch.add_regular_chain(table, &chain);
        batch.flush_chain(table, &chain);
        for rule in port_rules(&chain, endpoint) {
            batch.add_rule(table, rule);
        }
    }
}

/// One jump from `ports` per endpoint with published ports; its chain is made if
/// missing (its own update fills it), so a jump never names a chain that is not there.
fn set_jumps(batch: &mut Batch, table: &str, endpoints: &[EndpointRecord]) {
    for endpoint in endpoints.iter().filter(|e| publishes(e)) {
        let chain = endpoint_chain(endpoint);
        batch.add_regular_chain(table, &chain);
        batch.add_rule(table, Rule::new(PORTS).jump(&chain));
    }
}

fn network_rules(networks: &[NetworkRecord]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for network in networks {
        rules.extend(rules_of_network(network));
        for other in networks.iter().filter(|o| o.bridge != network.bridge) {
            rules.push(Rule::new("forward").iifname(true, &network.bridge).oifname(true, &other.bridge).drop());
        }
    }
    rules
}

fn rules_of_network(network: &NetworkRecord) -> Vec<Rule> {
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

fn port_rules(chain: &str, endpoint: &EndpointRecord) -> Vec<Rule> {
    let mut rules = Vec::new();
    for mapping in &endpoint.port_mappings {
        let l4proto = match mapping.protocol {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        };
        let rule = match mapping.host_ip {
            Some(ip) if !ip.is_unspecified() => Rule::new(chain).daddr_is(ip),
            _ => Rule::new(chain).daddr_is_local(),
        };
        rules.push(rule.dport(l4proto, mapping.host_port).dnat(endpoint.ip, mapping.container_port));
    }
    rules
}
