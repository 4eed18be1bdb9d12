//! `NetworkConfig`: the `[network]` section of berthd's config file, with defaults that
//! serve (the `docker0` bridge on 172.17.0.0/16, CNI plugins where Debian puts them).
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// berth's own bridge driver (netlink + nftables, no process exec).
    #[default]
    Bridge,
    /// CNI plugins from `cni_bin_dirs`, configured by the first file in `cni_conf_dir`.
    Cni,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    pub mode: NetworkMode,
    /// Name of the default network (Docker calls it `bridge`).
    pub default_network: String,
    pub bridge: String,
    /// The default network's subnet, until the kubelet sends a pod CIDR (which is
    /// kept in the store and wins from then on).
    pub subnet: Ipv4Net,
    /// Defaults to the first address of `subnet`.
    pub gateway: Option<std::net::Ipv4Addr>,
    pub mtu: u32,
    /// Pool that user-defined networks take their /24 (by default) subnets from.
    pub user_pool: Ipv4Net,
    pub user_prefix: u8,
    /// Name of berth's own nftables table (family `inet`).
    pub nft_table: String,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_dir: PathBuf,
    pub cni_cache_dir: PathBuf,
    /// How long one CNI plugin run may take before it is killed and its command fails.
    pub cni_timeout_seconds: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: NetworkMode::Bridge,
            default_network: "bridge".into(),
            bridge: "docker0".into(),
            subnet: "172.17.0.0/16".parse().unwrap_or_default(),
            gateway: None,
            mtu: 1500,
            user_pool: "172.18.0.0/15".parse().unwrap_or_default(),
            user_prefix: 24,
            nft_table: "berth".into(),
            cni_bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_cache_dir: "/var/lib/berth/cni".into(),
            cni_timeout_seconds: 60,
        }
    }
}
