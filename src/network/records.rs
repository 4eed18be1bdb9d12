//! What the network module keeps in the metadata store: networks, endpoints (one per
//! sandbox and network) and, in `ipam`, address allocations. Keys: network name;
//! `<sandbox>/<network>`; `<network>/<ip>`.
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::store::Table;

pub(crate) const NETWORKS: Table<NetworkRecord> = Table::new("network.networks");
pub(crate) const ENDPOINTS: Table<EndpointRecord> = Table::new("network.endpoints");

/// A bridge network: the default one (`bridge`/`docker0`) or a user-defined one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// User-defined networks give their containers name resolution of each other.
    pub user_defined: bool,
    /// No way out: no masquerade, no forwarding to other interfaces, no default route.
    #[serde(default)]
    pub internal: bool,
    /// Addresses are handed out from this part of the subnet only (Docker's IPRange).
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub attachable: bool,
    /// When it was created (0 for the default network).
    #[serde(default)]
    pub created_nanos: i64,
}

impl NetworkRecord {
    /// A user-defined network `name` on 10.1.0.0/24 (gateway .1), for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str) -> NetworkRecord {
        NetworkRecord {
            name: name.into(),
            id: name.into(),
            bridge: format!("br-{name}"),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, 1, 0, 0), 24).unwrap_or_default(),
            gateway: Ipv4Addr::new(10, 1, 0, 1),
            mtu: 1500,
            user_defined: true,
            internal: false,
            ip_range: None,
            labels: Default::default(),
            attachable: false,
            created_nanos: 0,
        }
    }

    /// The part of the subnet that addresses are allocated from.
    pub fn pool(&self) -> Ipv4Net {
        self.ip_range.unwrap_or(self.subnet)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A published port: `host_ip:host_port` (all local addresses when `host_ip` is None)
/// forwarded to the container's `container_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: Option<Ipv4Addr>,
}

/// One sandbox's interface on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub sandbox_id: String,
    pub network: String,
    /// Name inside the sandbox: eth0, eth1, ...
    pub interface: String,
    pub host_veth: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub netns_path: PathBuf,
    pub port_mappings: Vec<PortMapping>,
    pub hostname: String,
    pub aliases: Vec<String>,
    /// Absent from records written before links existed.
    #[serde(default)]
    pub links: Vec<super::driver::LinkAlias>,
    /// Where this sandbox's hosts/hostname/resolv.conf live, when berth writes them.
    pub files_dir: Option<PathBuf>,
    pub dns: Option<super::dns::DnsConfig>,
}

pub(crate) fn endpoint_key(sandbox_id: &str, network: &str) -> String {
    format!("{sandbox_id}/{network}")
}
