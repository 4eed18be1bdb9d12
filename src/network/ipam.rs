//! IP address management: allocations per network live in the metadata store and are
//! made inside the caller's write transaction, so no address is handed out twice, not
//! across daemon restarts either. The network and broadcast addresses and the gateway
//! are never handed out; the lowest free address is.
use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::error::{NetworkError, Result};
use super::records::NetworkRecord;
use crate::store::{Table, WriteTxn};

/// `<network>/<ip>` -> the sandbox holding the address.
pub(crate) const ALLOCATIONS: Table<String> = Table::new("network.ipam");

fn key(network: &str, ip: Ipv4Addr) -> String {
    format!("{network}/{ip}")
}

/// Takes the lowest free address of `subnet` for `owner`.
pub(crate) fn allocate(
    txn: &WriteTxn,
    network: &str,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    owner: &str,
) -> Result<Ipv4Addr> {
    let taken: HashSet<String> = txn
        .list_prefix(ALLOCATIONS, &format!("{network}/"))?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let free = first_free(subnet, gateway, |ip| taken.contains(&key(network, ip)));
    let ip = free.ok_or_else(|| NetworkError::SubnetFull {
        network: network.to_string(),
        subnet: subnet.to_string(),
    })?;
    txn.put(ALLOCATIONS, &key(network, ip), &owner.to_string())?;
    Ok(ip)
}

/// Takes `wanted` for `owner` when given (it must be a free host address of the
/// network's subnet, not its gateway), else the lowest free address of its pool.
pub(crate) fn allocate_for(txn: &WriteTxn, network: &NetworkRecord, wanted: Option<Ipv4Addr>, owner: &str) -> Result<Ipv4Addr> {
    let Some(ip) = wanted else {
        return allocate(txn, &network.name, network.pool(), network.gateway, owner);
    };
    let subnet = network.subnet;
    if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
        return Err(NetworkError::InvalidArgument(format!(
            "no configured subnet or ip-range contain the IP address {ip}"
        )));
    }
    if ip == network.gateway || txn.get(ALLOCATIONS, &key(&network.name, ip))?.is_some() {
        return Err(NetworkError::AddressInUse(ip));
    }
    txn.put(ALLOCATIONS, &key(&network.name, ip), &owner.to_string())?;
    Ok(ip)
}

/// Gives `ip` back; releasing an address that is not allocated is not an error.
pub(crate) fn release(txn: &WriteTxn, network: &str, ip: Ipv4Addr) -> Result<()> {
    txn.delete(ALLOCATIONS, &key(network, ip))?;
    Ok(())
}

/// How many addresses of `network` are allocated.
pub(crate) fn count(txn: &WriteTxn, network: &str) -> Result<usize> {
    Ok(txn.list_prefix(ALLOCATIONS, &format!("{network}/"))?.len())
}

/// Every allocation: (network, ip, owner).
pub(crate) fn all(txn: &WriteTxn) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (key, owner) in txn.list(ALLOCATIONS)? {
        if let Some((network, ip)) = key.rsplit_once('/') {
            out.push((network.to_string(), ip.to_string(), owner));
        }
    }
    Ok(out)
}

/// The lowest host address of `subnet` that is neither the gateway nor taken.
pub(crate) fn first_free(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    is_taken: impl Fn(Ipv4Addr) -> bool,
) -> Option<Ipv4Addr> {
    subnet.hosts().find(|ip| *ip != gateway && !is_taken(*ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_gateway_and_taken_addresses() {
        let subnet: Ipv4Net = "10.1.0.0/29".parse().unwrap();
        let gateway: Ipv4Addr = "10.1.0.1".parse().unwrap();
        let taken = |ip: Ipv4Addr| ip == Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(first_free(subnet, gateway, taken), Some(Ipv4Addr::new(10, 1, 0, 3)));
    }

    #[test]
    fn a_full_subnet_has_no_free_address() {
        let subnet: Ipv4Net = "10.1.0.0/30".parse().unwrap();
        let gateway: Ipv4Addr = "10.1.0.1".parse().unwrap();
        let taken = |ip: Ipv4Addr| ip == Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(first_free(subnet, gateway, taken), None);
    }

    #[test]
    fn fixed_addresses_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("meta.redb")).unwrap();
        let network = NetworkRecord { ip_range: Some("10.1.0.128/25".parse().unwrap()), ..NetworkRecord::for_tests("n") };
        let take = |wanted: Option<Ipv4Addr>| store.write(|txn| allocate_for(txn, &network, wanted, "s"));
        assert_eq!(take(None).unwrap(), Ipv4Addr::new(10, 1, 0, 129));
        assert_eq!(take(Some(Ipv4Addr::new(10, 1, 0, 7))).unwrap(), Ipv4Addr::new(10, 1, 0, 7));
        assert!(matches!(take(Some(Ipv4Addr::new(10, 1, 0, 7))), Err(NetworkError::AddressInUse(_))));
        assert!(matches!(take(Some(Ipv4Addr::new(10, 1, 0, 1))), Err(NetworkError::AddressInUse(_))));
        assert!(matches!(take(Some(Ipv4Addr::new(10, 2, 0, 7))), Err(NetworkError::InvalidArgument(_))));
        assert!(matches!(take(Some(Ipv4Addr::new(10, 1, 0, 255))), Err(NetworkError::InvalidArgument(_))));
    }

    #[test]
    fn allocations_persist_and_are_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let subnet: Ipv4Net = "10.1.0.0/30".parse().unwrap();
        let gateway: Ipv4Addr = "10.1.0.1".parse().unwrap();
        {
            let store = crate::store::Store::open(&path).unwrap();
            let ip = store.write(|txn| allocate(txn, "n", subnet, gateway, "a")).unwrap();
            assert_eq!(ip, Ipv4Addr::new(10, 1, 0, 2));
        }
        let store = crate::store::Store::open(&path).unwrap();
        let full = store.write(|txn| allocate(txn, "n", subnet, gateway, "b"));
        assert!(matches!(full, Err(NetworkError::SubnetFull { .. })), "{full:?}");
        store.write(|txn| release(txn, "n", Ipv4Addr::new(10, 1, 0, 2))).unwrap();
        let ip = store.write(|txn| allocate(txn, "n", subnet, gateway, "b")).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 1, 0, 2));
    }
}
