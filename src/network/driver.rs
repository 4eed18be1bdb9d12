//! The one seam between the manager and the two ways berth connects sandboxes: its
//! built-in bridge driver and CNI plugins. Also the request and answer types.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::dns::DnsConfig;
use super::error::Result;
use super::records::{NetworkRecord, PortMapping};

/// Connect sandbox `sandbox_id`, whose network namespace is `netns_path`.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub sandbox_id: String,
    pub netns_path: PathBuf,
    /// Networks to join, in interface order (eth0, eth1, ...); empty: the default one.
    pub networks: Vec<String>,
    pub port_mappings: Vec<PortMapping>,
    pub hostname: String,
    /// Further names the sandbox answers to on user-defined networks.
    pub aliases: Vec<String>,
    /// `--link` aliases: names that only this sandbox resolves, to a peer on a shared
    /// user-defined network (served by the embedded DNS server).
    pub links: Vec<LinkAlias>,
    /// When set, berth writes `hosts`, `hostname` and `resolv.conf` there and keeps
    /// `hosts` up to date as peers come and go.
    pub files_dir: Option<PathBuf>,
    /// DNS settings for resolv.conf; None: the host's resolvers.
    pub dns: Option<DnsConfig>,
    /// Per network: further aliases and a fixed address (Docker's EndpointSettings).
    pub endpoints: BTreeMap<String, EndpointOptions>,
}

/// What one endpoint asks for beyond the sandbox-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointOptions {
    /// Names this endpoint answers to on its network only.
    pub aliases: Vec<String>,
    /// A fixed address inside the network's subnet; None: the lowest free one.
    pub ipv4: Option<Ipv4Addr>,
}

/// Plugs one more network into a sandbox that is attached already (`docker network
/// connect` on a created or running container).
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    pub sandbox_id: String,
    pub network: String,
    pub options: EndpointOptions,
    /// As in [`AttachRequest`]: the sandbox's namespace, name and name files.
    pub netns_path: PathBuf,
    pub hostname: String,
    pub files_dir: Option<PathBuf>,
    pub dns: Option<DnsConfig>,
    /// The sandbox's published ports: the new endpoint carries them when no other
    /// endpoint of the sandbox does (its network's was disconnected) and its network
    /// has a way out.
    pub port_mappings: Vec<PortMapping>,
}

/// `--link target:alias`: `alias` resolves, for the linking sandbox only, to the
/// address of sandbox `target` on a network both are on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinkAlias {
    pub target: String,
    pub alias: String,
}

/// One interface of an attached sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    pub network: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub sandbox_id: String,
    pub interfaces: Vec<InterfaceInfo>,
}

impl Attachment {
    /// The primary address (eth0's), as CRI's PodSandboxStatus reports it.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.interfaces.first().map(|i| i.ip)
    }
}

/// What a network driver does. Calls come concurrently (one at a time per sandbox):
/// a driver serializes what must be, and holds no lock across external work.
pub trait NetworkDriver: Send + Sync {
    fn attach<'a>(&'a self, request: &'a AttachRequest) -> BoxFuture<'a, Result<Attachment>>;
    /// Idempotent: detaching a sandbox that is not attached succeeds.
    fn detach<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>>;
    fn status<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<Option<Attachment>>>;
    /// Verifies that the sandbox's networking is still as set up (CNI CHECK).
    fn check<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Drops everything of sandboxes not in `live`, restores what the live ones need.
    fn reconcile<'a>(&'a self, live: &'a [String]) -> BoxFuture<'a, Result<()>>;
    fn create_network<'a>(&'a self, request: &'a CreateNetwork) -> BoxFuture<'a, Result<NetworkRecord>>;
    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
    fn list_networks(&self) -> Result<Vec<NetworkRecord>>;
    /// Adds one interface to an attached sandbox; its peers' hosts files learn of it.
    fn connect<'a>(&'a self, request: &'a ConnectRequest) -> BoxFuture<'a, Result<InterfaceInfo>>;
    /// Removes the sandbox's interface on `network`; its peers' hosts files forget it.
    fn disconnect<'a>(&'a self, sandbox_id: &'a str, network: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Makes `cidr` the pod network's subnet; Ok(false) when nothing changed.
    fn set_pod_cidr(&self, cidr: ipnet::Ipv4Net) -> BoxFuture<'_, Result<bool>>;
}

/// `docker network create`: a name and, optionally, the subnet, gateway and range.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    /// CIDR text, checked here: "10.5.0.0/24".
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// CIDR text inside the subnet that addresses are allocated from.
    pub ip_range: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
}
