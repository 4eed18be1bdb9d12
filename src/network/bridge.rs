//! The built-in bridge driver: per sandbox and network a veth pair (host end on the
//! network's bridge, sandbox end `ethN` inside the sandbox's namespace), an address
//! from IPAM, the default route via the bridge, published ports as reserved host ports
//! plus DNAT rules. All kernel work goes over netlink; no process is executed.
//!
//! Calls for different sandboxes run concurrently: addresses are allocated in store
//! transactions, the port reservations and the bridge cache sit behind short std
//! mutexes never held across an await, nftables commits are serialized by a lock of
//! their own and run on a blocking thread, and network changes (create, remove, pod
//! CIDR) are serialized among themselves only.
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::FutureExt;

use super::config::NetworkConfig;
use super::driver::{AttachRequest, Attachment, ConnectRequest, CreateNetwork, InterfaceInfo, NetworkDriver};
use super::error::{NetworkError, Result};
use super::links::{configure_sandbox, write_sysctl, HostLinks, SandboxInterface};
use super::ports::{check_against, PortReservations};
use super::records::PortMapping;
use super::records::{endpoint_key, EndpointRecord, NetworkRecord, ENDPOINTS, NETWORKS};
use super::embedded_dns::EmbeddedDns;
use super::{hostfiles, ipam, nat, pod_cidr};
use crate::store::Store;

pub(crate) struct BridgeDriver {
    pub(crate) store: Store,
    pub(crate) config: NetworkConfig,
    pub(crate) links: HostLinks,
    ports: Mutex<PortReservations>,
    /// Bridge name -> ifindex, for bridges known to exist.
    bridges: Mutex<HashMap<String, u32>>,
    /// Held while the rules are read from the store and committed, so that commits
    /// land in order and the last one reflects the latest state.
    rules: tokio::sync::Mutex<()>,
    /// Serializes changes to the networks themselves (create, remove, pod CIDR).
    pub(crate) admin: tokio::sync::Mutex<()>,
    /// The 127.0.0.11 servers of sandboxes on user-defined networks.
    pub(crate) name_service: EmbeddedDns,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// The sandbox's side of an endpoint.
pub(crate) struct Owner<'a> {
    pub sandbox_id: &'a str,
    pub netns_path: &'a std::path::Path,
    pub hostname: &'a str,
    pub files_dir: &'a Option<std::path::PathBuf>,
    pub dns: &'a Option<super::dns::DnsConfig>,
}

/// The endpoint of `owner` on `network` at `ip`, as interface `interface`, no ports.
pub(crate) fn new_endpoint(network: &NetworkRecord, ip: Ipv4Addr, interface: String, owner: &Owner, aliases: Vec<String>) -> EndpointRecord {
    EndpointRecord {
        sandbox_id: owner.sandbox_id.into(),
        network: network.name.clone(),
        interface,
        host_veth: host_veth_name(ip),
        ip,
        prefix: network.subnet.prefix_len(),
        gateway: network.gateway,
        mac: mac_text(mac_of(ip)),
        netns_path: owner.netns_path.to_path_buf(),
        port_mappings: Vec::new(),
        hostname: owner.hostname.into(),
        aliases,
        links: Vec::new(),
        files_dir: owner.files_dir.clone(),
        dns: owner.dns.clone(),
    }
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
        let driver = BridgeDriver {
            store,
            config,
            links,
            ports: Mutex::default(),
            bridges: Mutex::default(),
            rules: tokio::sync::Mutex::new(()),
            admin: tokio::sync::Mutex::new(()),
            name_service: EmbeddedDns::default(),
        };
        driver.ensure_default_network()?;
        write_sysctl("net/ipv4/ip_forward", "1")?;
        for network in driver.store.list(NETWORKS)? {
            driver.ensure_bridge(&network.1).await?;
        }
        driver.apply_rules().await?;
        Ok(driver)
    }

    fn ensure_default_network(&self) -> Result<()> {
        let config = &self.config;
        let subnet = pod_cidr::stored(&self.store)?.unwrap_or(config.subnet.trunc());
        let gateway = config.gateway.filter(|g| subnet.contains(g)).or_else(|| subnet.hosts().next()).ok_or_else(|| {
            NetworkError::InvalidArgument(format!("subnet {subnet} has no host address"))
        })?;
        let record = NetworkRecord {
            name: config.default_network.clone(),
            id: config.default_network.clone(),
            bridge: config.bridge.clone(),
            subnet,
            gateway,
            mtu: config.mtu,
            user_defined: false,
            internal: false,
            ip_range: None,
            labels: Default::default(),
            attachable: false,
            created_nanos: 0,
        };
        self.store.write(|txn| {
            if txn.get(NETWORKS, &record.name)?.as_ref() != Some(&record) {
                txn.put(NETWORKS, &record.name, &record)?;
            }
            Ok::<_, NetworkError>(())
        })
    }

    /// Creates or adopts the bridge of `network`, with forwarding-related sysctls.
    pub(crate) async fn ensure_bridge(&self, network: &NetworkRecord) -> Result<u32> {
        let known = locked(&self.bridges).get(&network.bridge).copied();
        if let Some(index) = known {
            return Ok(index);
        }
        let prefix = network.subnet.prefix_len();
        let index = self.links.ensure_bridge(&network.bridge, network.gateway, prefix, network.mtu).await?;
        write_sysctl(&format!("net/ipv4/conf/{}/route_localnet", network.bridge), "1")?;
        locked(&self.bridges).insert(network.bridge.clone(), index);
        Ok(index)
    }

    /// Forgets that `bridge` exists (it is being deleted or re-made).
    pub(crate) fn forget_bridge(&self, bridge: &str) {
        locked(&self.bridges).remove(bridge);
    }

    /// Replaces the nftables table with what the store says, on a blocking thread.
    pub(crate) async fn apply_rules(&self) -> Result<()> {
        let _in_order = self.rules.lock().await;
        self.rebuild_rules().await
    }

    async fn rebuild_rules(&self) -> Result<()> {
        let networks: Vec<NetworkRecord> = self.store.list(NETWORKS)?.into_iter().map(|(_, n)| n).collect();
        let endpoints = self.all_endpoints()?;
        let table = self.config.nft_table.clone();
        off_the_workers(move || nat::rebuild(&table, &networks, &endpoints)).await
    }

    fn all_endpoints(&self) -> Result<Vec<EndpointRecord>> {
        Ok(self.store.list(ENDPOINTS)?.into_iter().map(|(_, e)| e).collect())
    }

    /// Programs the published ports of endpoints just recorded (`added`) or just
    /// forgotten (`removed`), touching only their rules; when that fails (someone
    /// flushed the table, say) the whole table is rebuilt from the store.
    pub(crate) async fn update_ports(&self, added: &[EndpointRecord], removed: &[EndpointRecord]) -> Result<()> {
        let publishing = |endpoints: &[EndpointRecord]| endpoints.iter().any(|e| !e.port_mappings.is_empty());
        if !publishing(added) && !publishing(removed) {
            return Ok(());
        }
        let _in_order = self.rules.lock().await;
        let endpoints = self.all_endpoints()?;
        let (table, added, removed) = (self.config.nft_table.clone(), added.to_vec(), removed.to_vec());
        let updated = off_the_workers(move || nat::update_ports(&table, &endpoints, &added, &removed)).await;
        if let Err(error) = updated {
            tracing::warn!(%error, "updating the published ports' rules failed; rebuilding the table");
            return self.rebuild_rules().await;
        }
        Ok(())
    }

    /// Reserves `sandbox`'s host ports after checking them against every endpoint's.
    pub(crate) fn reserve_ports(&self, sandbox: &str, mappings: &[PortMapping]) -> Result<()> {
        let mut ports = locked(&self.ports);
        let others: Vec<EndpointRecord> = self.store.list(ENDPOINTS)?.into_iter().map(|(_, e)| e).collect();
        check_against(mappings, &others)?;
        ports.reserve(sandbox, mappings)
    }

    /// At start-up: the host ports of a live sandbox, unless held already.
    pub(crate) fn reserve_live_ports_of(&self, sandbox: &str, mappings: &[PortMapping]) -> Result<()> {
        let mut ports = locked(&self.ports);
        match ports.holds(sandbox) {
            true => Ok(()),
            false => ports.reserve(sandbox, mappings),
        }
    }

    /// Reserves the sandbox's host ports unless it holds them already; Ok(true) when
    /// they were reserved now.
    pub(crate) fn hold_ports(&self, sandbox: &str, mappings: &[PortMapping]) -> Result<bool> {
        if locked(&self.ports).holds(sandbox) {
            return Ok(false);
        }
        self.reserve_ports(sandbox, mappings)?;
        Ok(true)
    }

    pub(crate) fn release_ports(&self, sandbox: &str) {
        locked(&self.ports).release(sandbox);
    }

    /// Starts or stops the sandbox's embedded DNS server to match its user-defined
    /// networks; call after any change to its endpoints.
    pub(crate) async fn sync_name_service(&self, sandbox_id: &str) -> Result<()> {
        self.name_service.sync(&self.store, sandbox_id).await
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

    /// One write transaction: addresses and endpoint records for every network, each
    /// network read again inside it (a concurrent pod CIDR change or network removal
    /// either happens before, and is seen, or after, and sees these addresses).
    fn record_endpoints(&self, request: &AttachRequest, names: &[NetworkRecord]) -> Result<(Vec<EndpointRecord>, Vec<NetworkRecord>)> {
        let sandbox = request.sandbox_id.as_str();
        self.store.write(|txn| {
            if !txn.list_prefix(ENDPOINTS, &format!("{sandbox}/"))?.is_empty() {
                return Err(NetworkError::AlreadyExists { what: "sandbox network", name: sandbox.into() });
            }
            let mut networks = Vec::new();
            for named in names {
                networks.push(txn.get(NETWORKS, &named.name)?.ok_or_else(|| NetworkError::not_found("network", &named.name))?);
            }
            let mut endpoints = Vec::new();
            for (n, network) in networks.iter().enumerate() {
                let options = request.endpoints.get(&network.name).cloned().unwrap_or_default();
                let ip = ipam::allocate_for(txn, network, options.ipv4, sandbox)?;
                let owner = Owner { sandbox_id: sandbox, netns_path: &request.netns_path, hostname: &request.hostname, files_dir: &request.files_dir, dns: &request.dns };
                let aliases = request.aliases.iter().chain(&options.aliases).cloned().collect();
                let mut endpoint = new_endpoint(network, ip, format!("eth{n}"), &owner, aliases);
                endpoint.links = request.links.clone();
                if n == 0 {
                    endpoint.port_mappings = request.port_mappings.clone();
                }
                txn.put(ENDPOINTS, &endpoint_key(sandbox, &network.name), &endpoint)?;
                endpoints.push(endpoint);
            }
            Ok((endpoints, networks))
        })
    }

    /// Deletes the records and gives the addresses back.
    pub(crate) fn forget_endpoints(&self, endpoints: &[EndpointRecord]) -> Result<()> {
        self.store.write(|txn| {
            for endpoint in endpoints {
                txn.delete(ENDPOINTS, &endpoint_key(&endpoint.sandbox_id, &endpoint.network))?;
                ipam::release(txn, &endpoint.network, endpoint.ip)?;
            }
            Ok(())
        })
    }

    async fn plumb(&self, endpoint: &EndpointRecord, network: &NetworkRecord) -> Result<()> {
        let default_route = endpoint.interface == "eth0" && !network.internal;
        self.plumb_routed(endpoint, network, default_route).await
    }

    /// The veth pair of `endpoint`, addressed, with the default route via it if asked.
    pub(crate) async fn plumb_routed(&self, endpoint: &EndpointRecord, network: &NetworkRecord, default_route: bool) -> Result<()> {
        let bridge = self.ensure_bridge(network).await?;
        let sandbox = SandboxInterface {
            netns_path: &endpoint.netns_path,
            name: &endpoint.interface,
            mac: mac_of(endpoint.ip),
            ip: endpoint.ip,
            prefix: endpoint.prefix,
            gateway: endpoint.gateway,
            default_route,
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

    async fn attach_inner(&self, request: &AttachRequest) -> Result<Attachment> {
        let networks = self.networks_for(request)?;
        if !self.endpoints_of(&request.sandbox_id)?.is_empty() {
            return Err(NetworkError::AlreadyExists { what: "sandbox network", name: request.sandbox_id.clone() });
        }
        self.reserve_ports(&request.sandbox_id, &request.port_mappings)?;
        let (endpoints, networks) = match self.record_endpoints(request, &networks) {
            Ok(recorded) => recorded,
            Err(e) => {
                self.release_ports(&request.sandbox_id);
                return Err(e);
            }
        };
        crash_point!("network.attach.after_endpoints");
        if let Err(e) = self.connect(&endpoints, &networks).await {
            self.rollback(&request.sandbox_id, &endpoints).await;
            return Err(e);
        }
        crash_point!("network.attach.after_plumb");
        if let Err(e) = self.sync_name_service(&request.sandbox_id).await {
            self.rollback(&request.sandbox_id, &endpoints).await;
            return Err(e);
        }
        hostfiles::refresh_for(&self.store, &request.sandbox_id)?;
        let interfaces = endpoints.iter().map(interface_of).collect();
        Ok(Attachment { sandbox_id: request.sandbox_id.clone(), interfaces })
    }

    async fn connect(&self, endpoints: &[EndpointRecord], networks: &[NetworkRecord]) -> Result<()> {
        for (endpoint, network) in endpoints.iter().zip(networks) {
            self.plumb(endpoint, network).await?;
        }
        self.update_ports(endpoints, &[]).await
    }

    async fn rollback(&self, sandbox_id: &str, endpoints: &[EndpointRecord]) {
        if let Err(e) = self.unplumb(endpoints).await {
            tracing::warn!(sandbox_id, error = %e, "rollback: removing veths");
        }
        if let Err(e) = self.forget_endpoints(endpoints) {
            tracing::warn!(sandbox_id, error = %e, "rollback: releasing addresses");
        }
        self.release_ports(sandbox_id);
        if let Err(e) = self.update_ports(&[], endpoints).await {
            tracing::warn!(sandbox_id, error = %e, "rollback: rules");
        }
    }

    pub(crate) async fn detach_inner(&self, sandbox_id: &str) -> Result<()> {
        let endpoints = self.endpoints_of(sandbox_id)?;
        if endpoints.is_empty() {
            self.release_ports(sandbox_id);
            return Ok(());
        }
        self.name_service.stop(sandbox_id);
        self.unplumb(&endpoints).await?;
        let peers = hostfiles::sandboxes_sharing(&self.store, sandbox_id)?;
        self.forget_endpoints(&endpoints)?;
        self.release_ports(sandbox_id);
        self.update_ports(&[], &endpoints).await?;
        for peer in peers {
            hostfiles::write_for(&self.store, &peer)?;
        }
        Ok(())
    }
}

impl NetworkDriver for BridgeDriver {
    fn attach<'a>(&'a self, request: &'a AttachRequest) -> BoxFuture<'a, Result<Attachment>> {
        self.attach_inner(request).boxed()
    }

    fn detach<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.detach_inner(sandbox_id).boxed()
    }

    fn status<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<Option<Attachment>>> {
        async move {
            let endpoints = self.endpoints_of(sandbox_id)?;
            Ok((!endpoints.is_empty()).then(|| Attachment {
                sandbox_id: sandbox_id.to_string(),
                interfaces: endpoints.iter().map(interface_of).collect(),
            }))
        }
        .boxed()
    }

    fn check<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
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

    fn reconcile<'a>(&'a self, live: &'a [String]) -> BoxFuture<'a, Result<()>> {
        self.reconcile_inner(live).boxed()
    }

    fn create_network<'a>(&'a self, request: &'a CreateNetwork) -> BoxFuture<'a, Result<NetworkRecord>> {
        self.create_network_inner(request).boxed()
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        self.remove_network_inner(name).boxed()
    }

    fn list_networks(&self) -> Result<Vec<NetworkRecord>> {
        Ok(self.store.list(NETWORKS)?.into_iter().map(|(_, n)| n).collect())
    }

    fn connect<'a>(&'a self, request: &'a ConnectRequest) -> BoxFuture<'a, Result<InterfaceInfo>> {
        self.connect_inner(request).boxed()
    }

    fn disconnect<'a>(&'a self, sandbox_id: &'a str, network: &'a str) -> BoxFuture<'a, Result<()>> {
        self.disconnect_inner(sandbox_id, network).boxed()
    }

    fn set_pod_cidr(&self, cidr: ipnet::Ipv4Net) -> BoxFuture<'_, Result<bool>> {
        self.set_pod_cidr_inner(cidr).boxed()
    }
}

/// Runs an nftables commit on a blocking thread, not on one of the async workers.
async fn off_the_workers(commit: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(commit)
        .await
        .map_err(|e| NetworkError::Nftables(format!("the commit's thread failed: {e}")))?
}
