//! The pod CIDR the kubelet sends with UpdateRuntimeConfig. In bridge mode it becomes
//! the default network's subnet (the bridge's address and the masquerade rule follow)
//! and is kept in the store, so it outlives restarts and wins over the config file's
//! `subnet`. A change is refused while any sandbox or container holds an address of the
//! old subnet: pods keep working and the kubelet, which retries at every node status
//! update, succeeds once they are gone. The same CIDR again is a no-op. In CNI mode the
//! plugin configuration owns the subnet and the CIDR is only logged.
use ipnet::Ipv4Net;

use super::bridge::BridgeDriver;
use super::error::{NetworkError, Result};
use super::ipam;
use super::records::{NetworkRecord, NETWORKS};
use crate::store::{Store, Table};

/// One row, [`KEY`]: the last pod CIDR accepted.
const POD_CIDR: Table<Ipv4Net> = Table::new("network.pod_cidr");
const KEY: &str = "default";

/// The CIDR text the kubelet sent, checked: IPv4, room for a gateway and a pod.
pub(crate) fn parse(text: &str) -> Result<Ipv4Net> {
    let first = text.split(',').next().unwrap_or_default().trim();
    let net: Ipv4Net = first
        .parse()
        .map_err(|_| NetworkError::InvalidArgument(format!("invalid pod CIDR {text:?}: expected an IPv4 CIDR like 10.244.1.0/24")))?;
    if net.prefix_len() > 30 {
        return Err(NetworkError::InvalidArgument(format!("pod CIDR {text} is too small: at most /30")));
    }
    Ok(net.trunc())
}

/// The pod CIDR accepted earlier, if any.
pub(crate) fn stored(store: &Store) -> Result<Option<Ipv4Net>> {
    Ok(store.get(POD_CIDR, KEY)?)
}

impl BridgeDriver {
    /// Makes `cidr` the default network's subnet; Ok(false) when it already is.
    pub(crate) async fn set_pod_cidr_inner(&self, cidr: Ipv4Net) -> Result<bool> {
        let _serialized = self.admin.lock().await;
        let name = self.config.default_network.clone();
        let current = self.store.get(NETWORKS, &name)?.ok_or_else(|| NetworkError::not_found("network", &name))?;
        if current.subnet == cidr {
            self.store.write(|txn| Ok::<_, NetworkError>(txn.put(POD_CIDR, KEY, &cidr)?))?;
            return Ok(false);
        }
        let others: Vec<NetworkRecord> = self.store.list(NETWORKS)?.into_iter().map(|(_, n)| n).filter(|n| n.name != name).collect();
        if let Some(other) = others.iter().find(|n| n.subnet.contains(&cidr.network()) || cidr.contains(&n.subnet.network())) {
            return Err(NetworkError::Conflict(format!("pod CIDR {cidr} overlaps network {} ({})", other.name, other.subnet)));
        }
        let gateway = cidr.hosts().next().ok_or_else(|| NetworkError::InvalidArgument(format!("pod CIDR {cidr} has no host address")))?;
        let record = NetworkRecord { subnet: cidr, gateway, ..current.clone() };
        self.store.write(|txn| {
            let held = ipam::count(txn, &name)?;
            if held > 0 {
                return Err(NetworkError::Conflict(format!(
                    "cannot change the pod CIDR from {} to {cidr}: {held} sandbox(es) hold addresses of {}; remove them first",
                    current.subnet, current.subnet
                )));
            }
            txn.put(NETWORKS, &name, &record)?;
            txn.put(POD_CIDR, KEY, &cidr)?;
            Ok(())
        })?;
        self.readdress_bridge(&record).await?;
        Ok(true)
    }

    /// The default bridge is made anew with the new gateway address (no veth is on it).
    async fn readdress_bridge(&self, record: &NetworkRecord) -> Result<()> {
        self.forget_bridge(&record.bridge);
        self.links.delete(&record.bridge).await?;
        self.ensure_bridge(record).await?;
        self.apply_rules().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidrs_are_checked_and_truncated() {
        assert_eq!(parse("10.244.1.7/24").unwrap().to_string(), "10.244.1.0/24");
        assert_eq!(parse("10.244.1.0/24,fd00::/64").unwrap().to_string(), "10.244.1.0/24");
        assert!(matches!(parse("fd00::/64"), Err(NetworkError::InvalidArgument(_))));
        assert!(matches!(parse("10.0.0.0/31"), Err(NetworkError::InvalidArgument(_))));
        assert!(matches!(parse("banana"), Err(NetworkError::InvalidArgument(_))));
    }

    #[test]
    fn the_accepted_cidr_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        assert_eq!(stored(&store).unwrap(), None);
        let cidr = parse("10.9.0.0/24").unwrap();
        store.write(|txn| txn.put(POD_CIDR, KEY, &cidr)).unwrap();
        assert_eq!(stored(&store).unwrap(), Some(cidr));
    }
}
