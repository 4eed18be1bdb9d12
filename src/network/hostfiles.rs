//! Keeps each sandbox's name files current: on attach the sandbox gets all three files,
//! and every sandbox sharing a user-defined network with it gets its `hosts` rewritten;
//! on detach the sharers are rewritten again without it. On a user-defined network the
//! resolv.conf names the embedded DNS server (see `embedded_dns`).
use std::collections::BTreeSet;
use std::path::Path;

use super::dns::{self, DnsConfig, Peer};
use super::error::Result;
use super::records::{EndpointRecord, ENDPOINTS, NETWORKS};
use crate::store::Store;

pub(crate) fn all_endpoints(store: &Store) -> Result<Vec<EndpointRecord>> {
    Ok(store.list(ENDPOINTS)?.into_iter().map(|(_, e)| e).collect())
}

pub(crate) fn user_networks(store: &Store) -> Result<BTreeSet<String>> {
    let networks = store.list(NETWORKS)?;
    Ok(networks.into_iter().filter(|(_, n)| n.user_defined).map(|(name, _)| name).collect())
}

/// The other sandboxes on the user-defined networks that `sandbox_id` is on.
pub(crate) fn sandboxes_sharing(store: &Store, sandbox_id: &str) -> Result<BTreeSet<String>> {
    let user = user_networks(store)?;
    let endpoints = all_endpoints(store)?;
    let mine: BTreeSet<&String> = endpoints
        .iter()
        .filter(|e| e.sandbox_id == sandbox_id && user.contains(&e.network))
        .map(|e| &e.network)
        .collect();
    Ok(endpoints
        .iter()
        .filter(|e| e.sandbox_id != sandbox_id && mine.contains(&e.network))
        .map(|e| e.sandbox_id.clone())
        .collect())
}

fn peers_of(endpoints: &[EndpointRecord], user: &BTreeSet<String>, sandbox_id: &str) -> Vec<Peer> {
    let mine: BTreeSet<&String> = endpoints
        .iter()
        .filter(|e| e.sandbox_id == sandbox_id && user.contains(&e.network))
        .map(|e| &e.network)
        .collect();
    let mut peers: Vec<Peer> = endpoints
        .iter()
        .filter(|e| e.sandbox_id != sandbox_id && mine.contains(&e.network))
        .map(|e| {
            let mut names = vec![e.hostname.clone()];
            names.extend(e.aliases.iter().cloned());
            names.retain(|n| !n.is_empty());
            Peer { ip: e.ip, names }
        })
        .filter(|p| !p.names.is_empty())
        .collect();
    peers.extend(legacy_link_peers(endpoints, user, sandbox_id));
    peers.sort_by_key(|p| p.ip);
    peers.dedup();
    peers
}

/// Docker's `--link`s on the default network: each peer sharing a network that is not
/// user-defined with `sandbox_id`, under the alias, its hostname and its name (the first
/// of its aliases), as dockerd writes them into the linking container's hosts file.
fn legacy_link_peers(endpoints: &[EndpointRecord], user: &BTreeSet<String>, sandbox_id: &str) -> Vec<Peer> {
    let own: Vec<&EndpointRecord> = endpoints.iter().filter(|e| e.sandbox_id == sandbox_id).collect();
    let shared: BTreeSet<&str> = own.iter().filter(|e| !user.contains(&e.network)).map(|e| e.network.as_str()).collect();
    let links: BTreeSet<&super::driver::LinkAlias> = own.iter().flat_map(|e| &e.links).collect();
    let mut peers = Vec::new();
    for link in links {
        let target = endpoints.iter().find(|e| e.sandbox_id == link.target && shared.contains(e.network.as_str()));
        if let Some(target) = target {
            let mut names: Vec<String> = Vec::new();
            for name in [Some(&link.alias), Some(&target.hostname), target.aliases.first()].into_iter().flatten() {
                if !name.is_empty() && !names.contains(name) {
                    names.push(name.clone());
                }
            }
            peers.push(Peer { ip: target.ip, names });
        }
    }
    peers
}

/// Writes `sandbox_id`'s files: all three when `all`, else only `hosts`.
pub(crate) fn write_files_of(store: &Store, sandbox_id: &str, all: bool) -> Result<()> {
    let endpoints = all_endpoints(store)?;
    let own = endpoints.iter().filter(|e| e.sandbox_id == sandbox_id);
    let Some(first) = own.min_by(|a, b| a.interface.cmp(&b.interface)) else { return Ok(()) };
    let Some(dir) = &first.files_dir else { return Ok(()) };
    let user = user_networks(store)?;
    let peers = peers_of(&endpoints, &user, sandbox_id);
    match all {
        true => {
            let on_user_network = endpoints.iter().any(|e| e.sandbox_id == sandbox_id && user.contains(&e.network));
            let embedded = on_user_network.then(|| dns::embedded_resolver_config(first.dns.as_ref(), Path::new(dns::HOST_RESOLV_CONF)));
            let extra = DnsConfig::extra_hosts_of(first.dns.as_ref());
            dns::write_files(dir, &first.hostname, Some(first.ip), &peers, embedded.as_ref().or(first.dns.as_ref()), extra)
        }
        false => dns::write_hosts(dir, &first.hostname, Some(first.ip), &peers, DnsConfig::extra_hosts_of(first.dns.as_ref())),
    }
}

pub(crate) fn write_for(store: &Store, sandbox_id: &str) -> Result<()> {
    write_files_of(store, sandbox_id, false)
}

/// After `sandbox_id` attached: its own files, and its peers' hosts.
pub(crate) fn refresh_for(store: &Store, sandbox_id: &str) -> Result<()> {
    write_files_of(store, sandbox_id, true)?;
    for peer in sandboxes_sharing(store, sandbox_id)? {
        write_for(store, &peer)?;
    }
    Ok(())
}
