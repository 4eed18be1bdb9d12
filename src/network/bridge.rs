//! The built-in bridge driver: per sandbox and network a veth pair (host end on the
//! network's bridge, sandbox end `ethN` inside the sandbox's namespace), an address
//! from IPAM, the default route via the bridge, published ports as reserved host ports
//! plus DNAT rules. All kernel work goes over netlink; no process is executed.
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::config::NetworkConfig;
use super::driver::{AttachRequest, Attachment, CreateNetwork, InterfaceInfo, NetworkDriver};
use super::error::{NetworkError, Result};
use super::links::{configure_sandbox, write_sysctl, HostLinks, SandboxInterface};
use super::ports::{check_against, PortReservations};
use super::records::{endpoint_key, EndpointRecord, NetworkRecord, ENDPOINTS, NETWORKS};
use super::{hostfiles, ipam, nat};
use crate::store::Store;

pub(crate) struct BridgeDriver {
    pub(crate) store: Store,
    pub(crate) config: NetworkConfig,
    pub(crate) links: HostLinks,
    pub(crate) ports: PortReservations,
    /// Bridge name -> ifindex, for bridges known to exist.
    pub(crate) bridges: HashMap<String, u32>,
}

/// Docker's MAC scheme: 02:42 followed by the IPv4 address.
fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The host end's name, unique because addresses are: `veth` + the address in hex.
fn host_veth_name(ip: Ipv4Addr) -> String {
    format!("veth{:08x}", u32::from(ip))
}

pub(crate) fn interface_of(endpoint: &EndpointRecord) -> InterfaceInfo {
    InterfaceInfo {
        network: endpoint.network.clone(),
        name: endpoint.interface.clone(),
        ip: endpoint.ip,
        prefix: endpoint.prefix,
        gateway: Some(endpoint.gateway),
        mac: endpoint.mac.clone(),
    }
}

impl BridgeDriver {
    pub(crate) async fn open(store: Store, config: NetworkConfig) -> Result<BridgeDriver> {
        let links = HostLinks::open()?;
        let mut driver = BridgeDriver { store, config, links, ports: PortReservations::default(), bridges: HashMap::new() };
        driver.ensure_default_network()?;
        write_sysctl("net/ipv4/ip_forward", "1")?;
        for network in driver.store.list(NETWORKS)? {
            driver.ensure_bridge(&network.1).await?;
        }
        driver.apply_rules()?;
        Ok(driver)
    }

    fn ensure_default_network(&self) -> Result<()> {
        let config = &self.config;
        let gateway = config.gateway.or_else(|| config.subnet.hosts().next()).ok_or_else(|| {
            NetworkError::InvalidArgument(format!("subnet {} has no host address", config.subnet))
        })?;
        let record = NetworkRecord {
            name: config.default_network.clone(),
            id: config.default_network.clone(),
            bridge: config.bridge.clone(),
            subnet: config.subnet.trunc(),
            gateway,
            mtu: config.mtu,
            user_defined: false,
        };
        self.store.write(|txn| {
            if txn.get(NETWORKS, &record.name)?.as_ref() != Some(&record) {
                txn.put(NETWORKS, &record.name, &record)?;
            }
            Ok::<_, NetworkError>(())
        })
    }

    /// Creates or adopts the bridge of `network`, with forwarding-related sysctls.
    pub(crate) async fn ensure_bridge(&mut self, network: &NetworkRecord) -> Result<u32> {
        if let Some(index) = self.bridges.get(&network.bridge) {
            return Ok(*index);
        }
        let prefix = network.subnet.prefix_len();
        let index = self.links.ensure_bridge(&network.bridge, network.gateway, prefix, network.mtu).await?;
        write_sysctl(&format!("net/ipv4/conf/{}/route_localnet", network.bridge), "1")?;
        self.bridges.insert(network.bridge.clone(), index);
        Ok(index)
    }

    /// Replaces the nftables table with what the store says.
    pub(crate) fn apply_rules(&self) -> Result<()> {
        let networks: Vec<NetworkRecord> = self.store.list(NETWORKS)?.into_iter().map(|(_, n)| n).collect();
        let endpoints: Vec<EndpointRecord> = self.store.list(ENDPOINTS)?.into_iter().map(|(_, e)| e).collect();
        nat::apply(&self.config.nft_table, &networks, &endpoints)
    }

    pub(crate) fn endpoints_of(&self, sandbox_id: &str) -> Result<Vec<EndpointRecord>> {
        let endpoints = self.store.read(|txn| txn.list_prefix(ENDPOINTS, &format!("{sandbox_id}/")))?;
        let mut endpoints: Vec<EndpointRecord> = endpoints.into_iter().map(|(_, e)| e).collect();
        endpoints.sort_by(|a, b| a.interface.cmp(&b.interface));
        Ok(endpoints)
    }

    fn networks_for(&self, request: &AttachRequest) -> Result<Vec<NetworkRecord>> {
        let names = match request.networks.is_empty() {
            true => vec![self.config.default_network.clone()],
            false => request.networks.clone(),
        };
        let unique: BTreeSet<&String> = names.iter().collect();
        if unique.len() != names.len() {
            return Err(NetworkError::InvalidArgument("a network is listed twice".into()));
        }
        names
            .iter()
            .map(|name| self.store.get(NETWORKS, name)?.ok_or_else(|| NetworkError::not_found("network", name)))
            .collect()
    }

    /// One write transaction: addresses and endpoint records for every network.
    fn record_endpoints(&self, request: &AttachRequest, networks: &[NetworkRecord]) -> Result<Vec<EndpointRecord>> {
        let sandbox = request.sandbox_id.as_str();
        self.store.write(|txn| {
            if !txn.list_prefix(ENDPOINTS, &format!("{sandbox}/"))?.is_empty() {
                return Err(NetworkError::AlreadyExists { what: "sandbox network", name: sandbox.into() });
            }
            let mut endpoints = Vec::new();
            for (n, network) in networks.iter().enumerate() {
                let ip = ipam::allocate(txn, &network.name, network.subnet, network.gateway, sandbox)?;
                let endpoint = EndpointRecord {
                    sandbox_id: sandbox.into(),
                    network: network.name.clone(),
                    interface: format!("eth{n}"),
                    host_veth: host_veth_name(ip),
                    ip,
                    prefix: network.subnet.prefix_len(),
                    gateway: network.gateway,
                    mac: mac_text(mac_of(ip)),
                    netns_path: request.netns_path.clone(),
                    port_mappings: if n == 0 { request.port_mappings.clone() } else { Vec::new() },
                    hostname: request.hostname.clone(),
                    aliases: request.aliases.clone(),
                    files_dir: request.files_dir.clone(),
                    dns: request.dns.clone(),
                };
                txn.put(ENDPOINTS, &endpoint_key(sandbox, &network.name), &endpoint)?;
                endpoints.push(endpoint);
            }
            Ok(endpoints)
        })
    }

    /// Deletes the records and gives the addresses back.
    fn forget_endpoints(&self, endpoints: &[EndpointRecord]) -> Result<()> {
        self.store.write(|txn| {
            for endpoint in endpoints {
                txn.delete(ENDPOINTS, &endpoint_key(&endpoint.sandbox_id, &endpoint.network))?;
                ipam::release(txn, &endpoint.network, endpoint.ip)?;
            }
            Ok(())
        })
    }

    async fn plumb(&mut self, endpoint: &EndpointRecord, network: &NetworkRecord) -> Result<()> {
        let bridge = self.ensure_bridge(network).await?;
        let sandbox = SandboxInterface {
            netns_path: &endpoint.netns_path,
            name: &endpoint.interface,
            mac: mac_of(endpoint.ip),
            ip: endpoint.ip,
            prefix: endpoint.prefix,
            gateway: endpoint.gateway,
            default_route: endpoint.interface == "eth0",
        };
        self.links.create_veth(&endpoint.host_veth, bridge, network.mtu, &sandbox).await?;
        configure_sandbox(&sandbox).await
    }

    async fn unplumb(&self, endpoints: &[EndpointRecord]) -> Result<()> {
        for endpoint in endpoints {
            self.links.delete(&endpoint.host_veth).await?;
        }
        Ok(())
    }

    async fn attach_inner(&mut self, request: &AttachRequest) -> Result<Attachment> {
        let networks = self.networks_for(request)?;
        if !self.endpoints_of(&request.sandbox_id)?.is_empty() {
            return Err(NetworkError::AlreadyExists { what: "sandbox network", name: request.sandbox_id.clone() });
        }
        let others: Vec<EndpointRecord> = self.store.list(ENDPOINTS)?.into_iter().map(|(_, e)| e).collect();
        check_against(&request.port_mappings, &others)?;
        self.ports.reserve(&request.sandbox_id, &request.port_mappings)?;
        let endpoints = match self.record_endpoints(request, &networks) {
            Ok(endpoints) => endpoints,
            Err(e) => {
                self.ports.release(&request.sandbox_id);
                return Err(e);
            }
        };
        crash_point!("network.attach.after_endpoints");
        if let Err(e) = self.connect(&endpoints, &networks).await {
            self.rollback(&request.sandbox_id, &endpoints).await;
            return Err(e);
        }
        crash_point!("network.attach.after_plumb");
        hostfiles::refresh_for(&self.store, &request.sandbox_id)?;
        let interfaces = endpoints.iter().map(interface_of).collect();
        Ok(Attachment { sandbox_id: request.sandbox_id.clone(), interfaces })
    }

    async fn connect(&mut self, endpoints: &[EndpointRecord], networks: &[NetworkRecord]) -> Result<()> {
        for (endpoint, network) in endpoints.iter().zip(networks) {
            self.plumb(endpoint, network).await?;
        }
        if endpoints.iter().any(|e| !e.port_mappings.is_empty()) {
            self.apply_rules()?;
        }
        Ok(())
    }

    async fn rollback(&mut self, sandbox_id: &str, endpoints: &[EndpointRecord]) {
        if let Err(e) = self.unplumb(endpoints).await {
            tracing::warn!(sandbox_id, error = %e, "rollback: removing veths");
        }
        if let Err(e) = self.forget_endpoints(endpoints) {
            tracing::warn!(sandbox_id, error = %e, "rollback: releasing addresses");
        }
        self.ports.release(sandbox_id);
        if endpoints.iter().any(|e| !e.port_mappings.is_empty()) {
            if let Err(e) = self.apply_rules() {
                tracing::warn!(sandbox_id, error = %e, "rollback: rules");
            }
        }
    }

    pub(crate) async fn detach_inner(&mut self, sandbox_id: &str) -> Result<()> {
        let endpoints = self.endpoints_of(sandbox_id)?;
        if endpoints.is_empty() {
            self.ports.release(sandbox_id);
            return Ok(());
        }
        self.unplumb(&endpoints).await?;
        let peers = hostfiles::sandboxes_sharing(&self.store, sandbox_id)?;
        self.forget_endpoints(&endpoints)?;
        self.ports.release(sandbox_id);
        if endpoints.iter().any(|e| !e.port_mappings.is_empty()) {
            self.apply_rules()?;
        }
        for peer in peers {
            hostfiles::write_for(&self.store, &peer)?;
        }
        Ok(())
    }
}

impl NetworkDriver for BridgeDriver {
    fn attach<'a>(&'a mut self, request: &'a AttachRequest) -> BoxFuture<'a, Result<Attachment>> {
        self.attach_inner(request).boxed()
    }

    fn detach<'a>(&'a mut self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.detach_inner(sandbox_id).boxed()
    }

    fn status<'a>(&'a mut self, sandbox_id: &'a str) -> BoxFuture<'a, Result<Option<Attachment>>> {
        async move {
            let endpoints = self.endpoints_of(sandbox_id)?;
            Ok((!endpoints.is_empty()).then(|| Attachment {
                sandbox_id: sandbox_id.to_string(),
                interfaces: endpoints.iter().map(interface_of).collect(),
            }))
        }
        .boxed()
    }

    fn check<'a>(&'a mut self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            let endpoints = self.endpoints_of(sandbox_id)?;
            if endpoints.is_empty() {
                return Err(NetworkError::not_found("sandbox network", sandbox_id));
            }
            for endpoint in &endpoints {
                if self.links.index_of(&endpoint.host_veth).await?.is_none() {
                    return Err(NetworkError::not_found("interface", &endpoint.host_veth));
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn reconcile<'a>(&'a mut self, live: &'a [String]) -> BoxFuture<'a, Result<()>> {
        self.reconcile_inner(live).boxed()
    }

    fn create_network<'a>(&'a mut self, request: &'a CreateNetwork) -> BoxFuture<'a, Result<NetworkRecord>> {
        self.create_network_inner(request).boxed()
    }

    fn remove_network<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        self.remove_network_inner(name).boxed()
    }

    fn list_networks(&mut self) -> Result<Vec<NetworkRecord>> {
        Ok(self.store.list(NETWORKS)?.into_iter().map(|(_, n)| n).collect())
    }
}
