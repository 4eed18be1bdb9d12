//! User-defined bridge networks (`docker network create/rm`): a bridge `br-<id>` and a
//! subnet that overlaps neither another network nor a route of the host; the subnet
//! is given or the first free /24 of the configured pool.
use std::io::Read;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::bridge::BridgeDriver;
use super::driver::CreateNetwork;
use super::error::{NetworkError, Result};
use super::records::{NetworkRecord, ENDPOINTS, NETWORKS};
use super::ipam;

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| NetworkError::io("read /dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn now_nanos() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

fn parse_subnet(text: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| NetworkError::InvalidArgument(format!("invalid subnet {text:?}: expected an IPv4 CIDR like 10.1.0.0/24")))?;
    if net.prefix_len() > 30 {
        return Err(NetworkError::InvalidArgument(format!("subnet {text} is too small")));
    }
    Ok(net.trunc())
}

fn parse_gateway(text: Option<&str>, subnet: Ipv4Net) -> Result<Ipv4Addr> {
    let Some(text) = text else {
        return subnet.hosts().next().ok_or_else(|| NetworkError::InvalidArgument(format!("subnet {subnet} is empty")));
    };
    let gateway: Ipv4Addr = text
        .parse()
        .map_err(|_| NetworkError::InvalidArgument(format!("invalid gateway {text:?}")))?;
    if !subnet.contains(&gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
        return Err(NetworkError::InvalidArgument(format!("gateway {gateway} is not a host address of {subnet}")));
    }
    Ok(gateway)
}

/// Docker's IPRange: a CIDR inside the subnet.
fn parse_range(text: Option<&str>, subnet: Ipv4Net) -> Result<Option<Ipv4Net>> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    let range: Ipv4Net = text
        .parse()
        .map_err(|_| NetworkError::InvalidArgument(format!("invalid ip-range {text:?}: expected an IPv4 CIDR")))?;
    if !subnet.contains(&range) {
        return Err(NetworkError::InvalidArgument(format!("ip-range {range} is not inside subnet {subnet}")));
    }
    Ok(Some(range.trunc()))
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl BridgeDriver {
    async fn check_free(&self, subnet: Ipv4Net, networks: &[NetworkRecord]) -> Result<()> {
        if let Some(other) = networks.iter().find(|n| overlaps(n.subnet, subnet)) {
            return Err(NetworkError::SubnetOverlap(format!("subnet {subnet} overlaps network {} ({})", other.name, other.subnet)));
        }
        if let Some(route) = self.links.overlapping_route(subnet).await? {
            return Err(NetworkError::SubnetOverlap(format!("subnet {subnet} overlaps the host route {route}")));
        }
        Ok(())
    }

    async fn pick_subnet(&self, networks: &[NetworkRecord]) -> Result<Ipv4Net> {
        let pool = self.config.user_pool;
        let subnets = pool
            .subnets(self.config.user_prefix)
            .map_err(|_| NetworkError::InvalidArgument(format!("bad user_prefix for pool {pool}")))?;
        for candidate in subnets {
            if self.check_free(candidate, networks).await.is_ok() {
                return Ok(candidate);
            }
        }
        Err(NetworkError::SubnetFull { network: "(address pool)".into(), subnet: pool.to_string() })
    }

    pub(crate) async fn create_network_inner(&self, request: &CreateNetwork) -> Result<NetworkRecord> {
        let _serialized = self.admin.lock().await;
        if request.name.is_empty() || request.name.contains('/') {
            return Err(NetworkError::InvalidArgument(format!("invalid network name {:?}", request.name)));
        }
        if self.store.get(NETWORKS, &request.name)?.is_some() {
            return Err(NetworkError::AlreadyExists { what: "network", name: request.name.clone() });
        }
        let networks = self.list_records()?;
        let subnet = match &request.subnet {
            Some(text) => {
                let subnet = parse_subnet(text)?;
                self.check_free(subnet, &networks).await?;
                subnet
            }
            None => self.pick_subnet(&networks).await?,
        };
        let gateway = parse_gateway(request.gateway.as_deref(), subnet)?;
        let ip_range = parse_range(request.ip_range.as_deref(), subnet)?;
        let id = random_id()?;
        let record = NetworkRecord {
            name: request.name.clone(),
            bridge: format!("br-{}", &id[..12]),
            id,
            subnet,
            gateway,
            mtu: self.config.mtu,
            user_defined: true,
            internal: request.internal,
            ip_range,
            labels: request.labels.clone(),
            attachable: request.attachable,
            created_nanos: now_nanos(),
        };
        self.store.write(|txn| {
            if txn.get(NETWORKS, &record.name)?.is_some() {
                return Err(NetworkError::AlreadyExists { what: "network", name: record.name.clone() });
            }
            txn.put(NETWORKS, &record.name, &record)?;
            Ok(())
        })?;
        if let Err(e) = self.bring_up(&record).await {
            let _ = self.drop_network(&record).await;
            return Err(e);
        }
        Ok(record)
    }

    async fn bring_up(&self, record: &NetworkRecord) -> Result<()> {
        self.ensure_bridge(record).await?;
        self.apply_rules().await
    }

    fn list_records(&self) -> Result<Vec<NetworkRecord>> {
        Ok(self.store.list(NETWORKS)?.into_iter().map(|(_, n)| n).collect())
    }

    pub(crate) async fn remove_network_inner(&self, name: &str) -> Result<()> {
        let _serialized = self.admin.lock().await;
        let record = self.store.get(NETWORKS, name)?.ok_or_else(|| NetworkError::not_found("network", name))?;
        if !record.user_defined {
            return Err(NetworkError::InvalidArgument(format!("{name} is a pre-defined network and cannot be removed")));
        }
        let users: Vec<String> = self
            .store
            .list(ENDPOINTS)?
            .into_iter()
            .filter(|(_, e)| e.network == name)
            .map(|(_, e)| e.sandbox_id)
            .collect();
        if !users.is_empty() {
            return Err(NetworkError::InUse { network: name.to_string(), id: record.id.clone(), sandboxes: users });
        }
        self.drop_network(&record).await
    }

    /// Removes the network, unless an attach took one of its addresses meanwhile.
    async fn drop_network(&self, record: &NetworkRecord) -> Result<()> {
        self.store.write(|txn| {
            if ipam::count(txn, &record.name)? > 0 {
                return Err(NetworkError::Conflict(format!("network {} is in use", record.name)));
            }
            txn.delete(NETWORKS, &record.name)?;
            Ok(())
        })?;
        self.apply_rules().await?;
        self.forget_bridge(&record.bridge);
        self.links.delete(&record.bridge).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_and_gateways_are_checked() {
        assert!(matches!(parse_subnet("10.1.0.0/33"), Err(NetworkError::InvalidArgument(_))));
        assert!(matches!(parse_subnet("banana"), Err(NetworkError::InvalidArgument(_))));
        assert_eq!(parse_subnet("10.1.0.7/24").unwrap().to_string(), "10.1.0.0/24");
        let subnet = parse_subnet("10.1.0.0/24").unwrap();
        assert_eq!(parse_gateway(None, subnet).unwrap(), Ipv4Addr::new(10, 1, 0, 1));
        assert!(parse_gateway(Some("10.2.0.1"), subnet).is_err());
        assert!(overlaps(subnet, "10.1.0.128/25".parse().unwrap()));
        assert!(!overlaps(subnet, "10.1.1.0/24".parse().unwrap()));
        assert_eq!(parse_range(Some("10.1.0.128/25"), subnet).unwrap(), Some("10.1.0.128/25".parse().unwrap()));
        assert!(parse_range(Some("10.2.0.0/25"), subnet).is_err());
        assert_eq!(parse_range(None, subnet).unwrap(), None);
    }
}
