//! Networking for sandboxes and containers: the `docker0`-style bridge, veth pairs,
//! IPAM persisted in the metadata store, NAT and port mapping with nftables (all over
//! netlink, no process exec), user-defined bridge networks with name resolution through
//! generated hosts files and the embedded DNS server at 127.0.0.11, CNI plugin mode, and
//! pinned network namespaces.
//!
//! [`NetworkManager`] is what the daemon holds; it calls the driver the config chose
//! (built-in bridge or CNI) without a lock of its own: CNI plugins for different pods
//! run concurrently, and the bridge driver locks only what it must (see `bridge`).
//! IPv4 only for now.
mod bridge;
mod cni;
mod cni_exec;
mod config;
pub mod dns;
mod driver;
mod embedded_dns;
mod error;
mod hostfiles;
mod hotplug;
mod ipam;
mod links;
mod nat;
mod netns;
mod networks;
mod pod_cidr;
mod nft;
mod ports;
mod reconcile;
mod records;

use std::net::Ipv4Addr;
use std::path::Path;

use tracing::Instrument;

pub use config::{NetworkConfig, NetworkMode};
pub use dns::{write_files as write_name_files, DnsConfig, Peer};

/// The host's resolvers as a sandbox gets them (loopback servers dropped).
pub fn host_resolvers() -> DnsConfig {
    dns::host_resolvers(std::path::Path::new(dns::HOST_RESOLV_CONF))
}
pub use driver::{AttachRequest, Attachment, ConnectRequest, CreateNetwork, EndpointOptions, InterfaceInfo, LinkAlias, NetworkDriver};
pub use error::{NetworkError, Result};
pub use netns::{create_pinned as create_pinned_netns, pin_path as netns_pin_path, remove_pinned as remove_pinned_netns};
pub use records::{NetworkRecord, PortMapping, Protocol};

use crate::store::Store;

/// The daemon's network service.
pub struct NetworkManager {
    driver: Box<dyn NetworkDriver>,
    config: NetworkConfig,
}

impl NetworkManager {
    /// Opens the configured driver in the calling thread's network namespace: the bridge
    /// driver creates or adopts the default bridge, enables forwarding and (re)writes its
    /// nftables table; the CNI driver checks its directories.
    pub async fn open(store: Store, config: NetworkConfig, state_dir: &Path) -> Result<NetworkManager> {
        let driver: Box<dyn NetworkDriver> = match config.mode {
            NetworkMode::Bridge => Box::new(bridge::BridgeDriver::open(store, config.clone()).await?),
            NetworkMode::Cni => Box::new(cni::CniDriver::open(store, config.clone(), state_dir)?),
        };
        Ok(NetworkManager { driver, config })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Whether the network can serve a pod, or why not. In CNI mode a configuration and
    /// every plugin it names must be there; this is checked anew at each call, since
    /// the kubelet waits for a network add-on to install them.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if self.config.mode != NetworkMode::Cni {
            return Ok(());
        }
        let list = cni::load_conflist(&self.config.cni_conf_dir).map_err(|error| error.to_string())?;
        for plugin in list["plugins"].as_array().into_iter().flatten() {
            let kind = plugin["type"].as_str().unwrap_or_default();
            cni_exec::find_plugin(kind, &self.config.cni_bin_dirs).map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// At start-up: forget the sandboxes not in `live`, restore what the live ones need.
    pub async fn reconcile(&self, live: &[String]) -> Result<()> {
        self.driver.reconcile(live).await
    }

    pub async fn attach(&self, request: &AttachRequest) -> Result<Attachment> {
        let span = tracing::info_span!("network.attach", sandbox_id = %request.sandbox_id);
        async { self.driver.attach(request).await }.instrument(span).await
    }

    /// Idempotent.
    pub async fn detach(&self, sandbox_id: &str) -> Result<()> {
        self.driver.detach(sandbox_id).await
    }

    pub async fn status(&self, sandbox_id: &str) -> Result<Option<Attachment>> {
        self.driver.status(sandbox_id).await
    }

    /// Verifies the sandbox's networking (CNI CHECK; the bridge driver checks its veths).
    pub async fn check(&self, sandbox_id: &str) -> Result<()> {
        self.driver.check(sandbox_id).await
    }

    pub async fn ip_of(&self, sandbox_id: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self.status(sandbox_id).await?.and_then(|a| a.ip()))
    }

    pub async fn create_network(&self, request: &CreateNetwork) -> Result<NetworkRecord> {
        self.driver.create_network(request).await
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        self.driver.remove_network(name).await
    }

    pub async fn list_networks(&self) -> Result<Vec<NetworkRecord>> {
        self.driver.list_networks()
    }

    /// The networks, read from the store without waiting (for sync callers).
    pub fn network_records(&self) -> Result<Vec<NetworkRecord>> {
        self.driver.list_networks()
    }

    /// Adds a network to an attached sandbox (one call at a time per sandbox).
    pub async fn connect(&self, request: &ConnectRequest) -> Result<InterfaceInfo> {
        self.driver.connect(request).await
    }

    /// Takes a network from an attached sandbox (one call at a time per sandbox).
    pub async fn disconnect(&self, sandbox_id: &str, network: &str) -> Result<()> {
        self.driver.disconnect(sandbox_id, network).await
    }

    /// The kubelet's pod CIDR (UpdateRuntimeConfig; empty: nothing to do). See
    /// [`pod_cidr`] for what it changes and when a change is refused.
    pub async fn set_pod_cidr(&self, text: &str) -> Result<bool> {
        if text.trim().is_empty() {
            return Ok(false);
        }
        let cidr = pod_cidr::parse(text)?;
        self.driver.set_pod_cidr(cidr).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    #[test]
    fn the_manager_can_be_shared_across_tokio_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<NetworkManager>();
        #[allow(dead_code)]
        fn futures_are_send(manager: &NetworkManager, request: &AttachRequest) {
            assert_send(manager.attach(request));
            assert_send(manager.detach("id"));
            assert_send(manager.reconcile(&[]));
        }
    }

    #[test]
    fn config_defaults_and_overrides() {
        let config: NetworkConfig = serde_json::from_str(r#"{"mode": "cni", "subnet": "10.5.0.0/16"}"#).unwrap();
        assert_eq!(config.mode, NetworkMode::Cni);
        assert_eq!(config.subnet.to_string(), "10.5.0.0/16");
        assert_eq!(config.bridge, "docker0");
        assert_eq!(config.cni_bin_dirs, vec![std::path::PathBuf::from("/opt/cni/bin"), "/usr/lib/cni".into()]);
        assert!(serde_json::from_str::<NetworkConfig>(r#"{"subnet": "10.5.0.0/33"}"#).is_err());
    }
}
