//! One network more or less for a sandbox that is attached already (`docker network
//! connect` / `disconnect`): the endpoint is recorded with its address in one store
//! transaction, then its veth is plumbed as the next free `ethN`; a disconnect deletes
//! the veth, gives the address back and puts the default route on an interface left
//! with a way out. The sandbox's published ports move from a disconnected endpoint to
//! one left on a network with a way out, else to the next one connected to such a network. Either way the hosts files of the sandbox and of
//! its peers on user-defined networks are rewritten. The caller serializes calls per
//! sandbox, as for attach and detach.
use super::bridge::{interface_of, new_endpoint, BridgeDriver, Owner};
use super::driver::{ConnectRequest, InterfaceInfo};
use super::error::{NetworkError, Result};
use super::links::set_default_route;
use super::records::{endpoint_key, EndpointRecord, NetworkRecord, PortMapping, ENDPOINTS, NETWORKS};
use super::{hostfiles, ipam};

/// The lowest `ethN` that none of `endpoints` uses.
fn next_interface(endpoints: &[EndpointRecord]) -> String {
    (0..)
        .map(|n| format!("eth{n}"))
        .find(|name| !endpoints.iter().any(|e| &e.interface == name))
        .unwrap_or_default()
}

impl BridgeDriver {
    pub(crate) async fn connect_inner(&self, request: &ConnectRequest) -> Result<InterfaceInfo> {
        let existing = self.endpoints_of(&request.sandbox_id)?;
        let ports_elsewhere = existing.iter().any(|e| !e.port_mappings.is_empty());
        let ports = if ports_elsewhere { &[][..] } else { &request.port_mappings[..] };
        let newly_held = !ports.is_empty() && self.hold_ports(&request.sandbox_id, ports)?;
        let plugged = self.plug(request, &existing, ports).await;
        // Ports reserved for an endpoint that did not take them (an internal network).
        if newly_held && plugged.as_ref().map_or(true, |endpoint| endpoint.port_mappings.is_empty()) {
            self.release_ports(&request.sandbox_id);
        }
        let endpoint = plugged?;
        self.refresh_names(&request.sandbox_id).await?;
        Ok(interface_of(&endpoint))
    }

    /// Records the endpoint, plumbs its veth and, if it carries the sandbox's published
    /// ports, programs them; undone on failure.
    async fn plug(&self, request: &ConnectRequest, existing: &[EndpointRecord], ports: &[PortMapping]) -> Result<EndpointRecord> {
        let (endpoint, network) = self.record_endpoint(request, existing, ports)?;
        let mut plumbed = match self.has_way_out(existing) {
            Ok(way_out) => self.plumb_routed(&endpoint, &network, !network.internal && !way_out).await,
            Err(error) => Err(error),
        };
        if plumbed.is_ok() {
            plumbed = self.update_ports(std::slice::from_ref(&endpoint), &[]).await;
        }
        if let Err(error) = plumbed {
            self.undo_connect(&endpoint).await;
            return Err(error);
        }
        Ok(endpoint)
    }

    /// Whether one of `endpoints` is on a network with a way out (and so holds the
    /// default route).
    fn has_way_out(&self, endpoints: &[EndpointRecord]) -> Result<bool> {
        for endpoint in endpoints {
            if self.store.get(NETWORKS, &endpoint.network)?.is_some_and(|n| !n.internal) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The new endpoint and its address, in one transaction.
    /// `ports`: the published ports the endpoint takes if its network has a way out.
    fn record_endpoint(&self, request: &ConnectRequest, existing: &[EndpointRecord], ports: &[PortMapping]) -> Result<(EndpointRecord, NetworkRecord)> {
        let sandbox = request.sandbox_id.as_str();
        let key = endpoint_key(sandbox, &request.network);
        self.store.write(|txn| {
            let network = txn.get(NETWORKS, &request.network)?.ok_or_else(|| NetworkError::not_found("network", &request.network))?;
            if txn.get(ENDPOINTS, &key)?.is_some() {
                return Err(NetworkError::AlreadyExists { what: "endpoint", name: format!("{sandbox} in network {}", network.name) });
            }
            let ip = ipam::allocate_for(txn, &network, request.options.ipv4, sandbox)?;
            let owner = Owner { sandbox_id: sandbox, netns_path: &request.netns_path, hostname: &request.hostname, files_dir: &request.files_dir, dns: &request.dns };
            let mut endpoint = new_endpoint(&network, ip, next_interface(existing), &owner, request.options.aliases.clone());
            if !network.internal {
                endpoint.port_mappings = ports.to_vec();
            }
            txn.put(ENDPOINTS, &key, &endpoint)?;
            Ok((endpoint, network))
        })
    }

    async fn undo_connect(&self, endpoint: &EndpointRecord) {
        if let Err(error) = self.links.delete(&endpoint.host_veth).await {
            tracing::warn!(sandbox_id = %endpoint.sandbox_id, %error, "connect rollback: removing the veth");
        }
        if let Err(error) = self.forget_endpoints(std::slice::from_ref(endpoint)) {
            tracing::warn!(sandbox_id = %endpoint.sandbox_id, %error, "connect rollback: releasing the address");
        }
    }

    pub(crate) async fn disconnect_inner(&self, sandbox_id: &str, network: &str) -> Result<()> {
        let endpoint = self
            .store
            .get(ENDPOINTS, &endpoint_key(sandbox_id, network))?
            .ok_or_else(|| NetworkError::not_found("endpoint", format!("of {sandbox_id} in network {network}")))?;
        let peers = hostfiles::sandboxes_sharing(&self.store, sandbox_id)?;
        self.links.delete(&endpoint.host_veth).await?;
        self.forget_endpoints(std::slice::from_ref(&endpoint))?;
        let left = self.endpoints_of(sandbox_id)?;
        let heir = match endpoint.port_mappings.is_empty() {
            true => None,
            false => self.hand_ports_over(&endpoint.port_mappings, &left)?,
        };
        self.update_ports(heir.as_slice(), std::slice::from_ref(&endpoint)).await?;
        if left.is_empty() {
            self.release_ports(sandbox_id);
        }
        self.restore_way_out(&left).await?;
        self.refresh_names(sandbox_id).await?;
        // Peers that no longer share a network with it.
        for peer in peers {
            hostfiles::write_for(&self.store, &peer)?;
        }
        Ok(())
    }

    /// After the endpoint carrying the sandbox's published ports went: they move to the
    /// first endpoint left on a network with a way out, which is returned (none: they
    /// wait for a connect).
    fn hand_ports_over(&self, ports: &[PortMapping], left: &[EndpointRecord]) -> Result<Option<EndpointRecord>> {
        for endpoint in left {
            if self.store.get(NETWORKS, &endpoint.network)?.is_some_and(|n| !n.internal) {
                let key = endpoint_key(&endpoint.sandbox_id, &endpoint.network);
                return self.store.write(|txn| {
                    let Some(mut record) = txn.get(ENDPOINTS, &key)? else { return Ok(None) };
                    record.port_mappings = ports.to_vec();
                    txn.put(ENDPOINTS, &key, &record)?;
                    Ok(Some(record))
                });
            }
        }
        Ok(None)
    }

    /// After a disconnect: the default route via the first endpoint left on a network
    /// with a way out (the one gone may have held it).
    async fn restore_way_out(&self, left: &[EndpointRecord]) -> Result<()> {
        for endpoint in left {
            if self.store.get(NETWORKS, &endpoint.network)?.is_some_and(|n| !n.internal) {
                return set_default_route(&endpoint.netns_path, &endpoint.interface, endpoint.gateway).await;
            }
        }
        Ok(())
    }

    /// After a connect or disconnect: the sandbox's name files (resolv.conf names the
    /// embedded server while it is on a user network) and its peers' hosts files, and
    /// its embedded DNS server started or stopped to match.
    async fn refresh_names(&self, sandbox_id: &str) -> Result<()> {
        hostfiles::refresh_for(&self.store, sandbox_id)?;
        self.sync_name_service(sandbox_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_interface_fills_the_first_gap() {
        let network = NetworkRecord::for_tests("n");
        let owner = Owner { sandbox_id: "s", netns_path: std::path::Path::new("/x"), hostname: "h", files_dir: &None, dns: &None };
        let endpoint = |name: &str| new_endpoint(&network, std::net::Ipv4Addr::new(10, 1, 0, 2), name.into(), &owner, Vec::new());
        assert_eq!(next_interface(&[]), "eth0");
        assert_eq!(next_interface(&[endpoint("eth0"), endpoint("eth2")]), "eth1");
        assert_eq!(next_interface(&[endpoint("eth0"), endpoint("eth1")]), "eth2");
    }
}
