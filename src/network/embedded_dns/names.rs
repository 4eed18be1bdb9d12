//! The name table one sandbox sees: every endpoint on the user-defined networks it is
//! on (itself included) under its hostname and aliases, bare and qualified with the
//! network's name (`web` and `web.app`), plus the sandbox's own `--link` aliases.
//! Built from the store's endpoint records at each query, so peers that come and go
//! (attach, detach, connect, disconnect) are seen without any bookkeeping here.
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::super::error::Result;
use super::super::hostfiles::{all_endpoints, user_networks};
use super::super::records::EndpointRecord;
use crate::store::Store;

/// One name and the address it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    ip: Ipv4Addr,
}

#[derive(Debug, Default)]
pub(crate) struct NameTable {
    entries: Vec<Entry>,
}

/// Lower case, without the root's trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The names an endpoint answers to: its hostname and aliases, non-empty.
fn names_of(endpoint: &EndpointRecord) -> impl Iterator<Item = String> + '_ {
    std::iter::once(&endpoint.hostname).chain(&endpoint.aliases).filter(|n| !n.is_empty()).map(|n| normalize(n))
}

impl NameTable {
    pub(crate) fn load(store: &Store, sandbox_id: &str) -> Result<NameTable> {
        Ok(NameTable::build(&all_endpoints(store)?, &user_networks(store)?, sandbox_id))
    }

    pub(crate) fn build(endpoints: &[EndpointRecord], user: &BTreeSet<String>, sandbox_id: &str) -> NameTable {
        let own: Vec<&EndpointRecord> =
            endpoints.iter().filter(|e| e.sandbox_id == sandbox_id && user.contains(&e.network)).collect();
        let shared: BTreeSet<&str> = own.iter().map(|e| e.network.as_str()).collect();
        let visible: Vec<&EndpointRecord> = endpoints.iter().filter(|e| shared.contains(e.network.as_str())).collect();
        let mut entries = Vec::new();
        for endpoint in &visible {
            for name in names_of(endpoint) {
                entries.push(Entry { name: format!("{name}.{}", normalize(&endpoint.network)), ip: endpoint.ip });
                entries.push(Entry { name, ip: endpoint.ip });
            }
        }
        let links: BTreeSet<&crate::network::LinkAlias> = own.iter().flat_map(|e| &e.links).collect();
        for link in links {
            let targets = visible.iter().filter(|e| e.sandbox_id == link.target);
            entries.extend(targets.map(|e| Entry { name: normalize(&link.alias), ip: e.ip }));
        }
        NameTable { entries }
    }

    /// The addresses of `name`, tried as given and then without each of `searches`
    /// (a resolver appends its search domains to a bare name).
    pub(crate) fn lookup(&self, name: &str, searches: &[String]) -> Vec<Ipv4Addr> {
        let name = normalize(name);
        let bare = searches.iter().filter_map(|s| name.strip_suffix(&format!(".{}", normalize(s))).map(str::to_string));
        for candidate in std::iter::once(name.clone()).chain(bare) {
            let mut found: Vec<Ipv4Addr> = self.entries.iter().filter(|e| e.name == candidate).map(|e| e.ip).collect();
            if !found.is_empty() {
                found.sort();
                found.dedup();
                return found;
            }
        }
        Vec::new()
    }

    /// The qualified name (`web.app`) of the peer holding `ip`, for PTR queries.
    pub(crate) fn reverse(&self, ip: Ipv4Addr) -> Option<&str> {
        self.entries.iter().find(|e| e.ip == ip && e.name.contains('.')).map(|e| e.name.as_str())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::network::LinkAlias;

    pub(in super::super) fn endpoint(sandbox: &str, network: &str, ip: [u8; 4], aliases: &[&str]) -> EndpointRecord {
        EndpointRecord {
            sandbox_id: sandbox.into(),
            network: network.into(),
            interface: "eth0".into(),
            host_veth: format!("veth-{sandbox}"),
            ip: ip.into(),
            prefix: 24,
            gateway: [ip[0], ip[1], ip[2], 1].into(),
            mac: String::new(),
            netns_path: "/nonexistent".into(),
            port_mappings: Vec::new(),
            hostname: sandbox.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            links: Vec::new(),
            files_dir: None,
            dns: None,
        }
    }

    fn world() -> (Vec<EndpointRecord>, BTreeSet<String>) {
        let mut beta = endpoint("beta", "app", [10, 1, 0, 3], &[]);
        beta.links = vec![LinkAlias { target: "alpha".into(), alias: "Primary".into() }];
        let endpoints = vec![
            endpoint("alpha", "app", [10, 1, 0, 2], &["db"]),
            beta,
            endpoint("gamma", "other", [10, 2, 0, 2], &[]),
            endpoint("plain", "bridge", [172, 17, 0, 2], &[]),
        ];
        (endpoints, ["app".to_string(), "other".to_string()].into())
    }

    #[test]
    fn peers_on_shared_networks_resolve_by_name_alias_and_qualified_name() {
        let (endpoints, user) = world();
        let table = NameTable::build(&endpoints, &user, "beta");
        let alpha = vec![Ipv4Addr::new(10, 1, 0, 2)];
        assert_eq!(table.lookup("alpha", &[]), alpha);
        assert_eq!(table.lookup("DB.", &[]), alpha);
        assert_eq!(table.lookup("alpha.app", &[]), alpha);
        assert_eq!(table.lookup("alpha.corp.example", &["corp.example".into()]), alpha);
        assert_eq!(table.lookup("primary", &[]), alpha, "the link alias");
        assert_eq!(table.lookup("beta", &[]), vec![Ipv4Addr::new(10, 1, 0, 3)], "itself");
        assert!(table.lookup("gamma", &[]).is_empty(), "not on a shared network");
        assert!(table.lookup("plain", &[]).is_empty(), "the default bridge has no names");
        assert_eq!(table.reverse(Ipv4Addr::new(10, 1, 0, 2)), Some("alpha.app"));
    }

    #[test]
    fn link_aliases_belong_to_the_linking_sandbox_only() {
        let (endpoints, user) = world();
        assert!(NameTable::build(&endpoints, &user, "alpha").lookup("primary", &[]).is_empty());
        assert!(NameTable::build(&endpoints, &user, "plain").lookup("alpha", &[]).is_empty());
    }
}
