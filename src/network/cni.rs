//! CNI mode: the pod network is whatever the first configuration in `cni_conf_dir`
//! (`.conflist`, or a single-plugin `.conf`/`.json`) says, run with the plugins from
//! `cni_bin_dirs`. ADD runs the chain in order, each plugin getting the previous one's
//! result as `prevResult` and, when it declares the capability, the sandbox's port
//! mappings as `runtimeConfig.portMappings`; DEL runs it in reverse. The result and the
//! configuration used are cached in `<cni_cache_dir>/results/<sandbox>-eth0.json`, so
//! DEL works after a daemon restart even if the configuration changed. Like containerd,
//! berth also brings up `lo` with the `loopback` plugin when it is installed.
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

use super::cni_exec::{run, Invocation};
use super::config::NetworkConfig;
use super::driver::{AttachRequest, Attachment, ConnectRequest, CreateNetwork, InterfaceInfo, NetworkDriver};
use super::error::{NetworkError, Result};
use super::records::{NetworkRecord, PortMapping, Protocol};
use crate::store::Store;

const IFNAME: &str = "eth0";

pub struct CniDriver {
    config: NetworkConfig,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).map_err(|e| NetworkError::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&text)
        .map_err(|e| NetworkError::InvalidArgument(format!("{} is not valid JSON: {e}", path.display())))
}

/// The network list to use: the first file (by name) in the directory; a single
/// plugin configuration is wrapped into a list of one.
pub(crate) fn load_conflist(dir: &Path) -> Result<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| NetworkError::io(format!("read CNI config dir {}", dir.display()), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("conflist" | "conf" | "json")))
        .collect();
    files.sort();
    let first = files.first().ok_or_else(|| NetworkError::not_found("CNI network configuration in", dir.display().to_string()))?;
    let config = read_json(first)?;
    if config["plugins"].is_array() {
        return Ok(config);
    }
    let mut plugin = config.clone();
    if let Some(object) = plugin.as_object_mut() {
        object.remove("name");
        object.remove("cniVersion");
    }
    Ok(json!({"cniVersion": config["cniVersion"], "name": config["name"], "plugins": [plugin]}))
}

fn port_mappings_json(mappings: &[PortMapping]) -> Value {
    let entries: Vec<Value> = mappings
        .iter()
        .map(|m| {
            let protocol = match m.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            let mut entry = json!({"hostPort": m.host_port, "containerPort": m.container_port, "protocol": protocol});
            if let Some(ip) = m.host_ip {
                entry["hostIP"] = json!(ip.to_string());
            }
            entry
        })
        .collect();
    Value::Array(entries)
}

/// The configuration one plugin of `list` gets on stdin.
fn plugin_input(list: &Value, plugin: &Value, prev: Option<&Value>, runtime: &Value) -> Value {
    let mut input = plugin.clone();
    input["name"] = list["name"].clone();
    input["cniVersion"] = list["cniVersion"].clone();
    if let Some(prev) = prev.filter(|p| !p.is_null()) {
        input["prevResult"] = prev.clone();
    }
    let mut runtime_config = json!({});
    if let Some(capabilities) = plugin["capabilities"].as_object() {
        for (name, enabled) in capabilities {
            if enabled.as_bool() == Some(true) && !runtime[name].is_null() {
                runtime_config[name] = runtime[name].clone();
            }
        }
    }
    if runtime_config.as_object().is_some_and(|o| !o.is_empty()) {
        input["runtimeConfig"] = runtime_config;
    }
    input
}

/// What is cached per sandbox to undo the ADD later.
fn cache_entry(sandbox: &str, netns: &Path, list: &Value, result: &Value, runtime: &Value) -> Value {
    json!({
        "kind": "cniCacheV1", "containerId": sandbox, "ifName": IFNAME, "networkName": list["name"],
        "netns": netns, "config": list, "result": result, "runtimeConfig": runtime,
    })
}

fn interface_of(result: &Value, network: &str) -> Option<InterfaceInfo> {
    let ip = result["ips"].as_array()?.iter().find(|ip| ip["address"].as_str().is_some_and(|a| !a.contains(':')))?;
    let net: ipnet::Ipv4Net = ip["address"].as_str()?.parse().ok()?;
    let gateway = ip["gateway"].as_str().and_then(|g| g.parse::<Ipv4Addr>().ok());
    let interfaces = result["interfaces"].as_array();
    let mac = ip["interface"]
        .as_u64()
        .and_then(|i| interfaces?.get(i as usize))
        .and_then(|i| i["mac"].as_str())
        .unwrap_or_default();
    Some(InterfaceInfo { network: network.into(), name: IFNAME.into(), ip: net.addr(), prefix: net.prefix_len(), gateway, mac: mac.into() })
}

impl CniDriver {
    pub(crate) fn open(_store: Store, config: NetworkConfig, _state: &Path) -> Result<CniDriver> {
        let results = config.cni_cache_dir.join("results");
        std::fs::create_dir_all(&results).map_err(|e| NetworkError::io(format!("mkdir {}", results.display()), e))?;
        Ok(CniDriver { config })
    }

    fn cache_path(&self, sandbox: &str) -> PathBuf {
        self.config.cni_cache_dir.join("results").join(format!("{sandbox}-{IFNAME}.json"))
    }

    fn invocation<'a>(&'a self, command: &'a str, sandbox: &'a str, netns: &'a Path, ifname: &'a str) -> Invocation<'a> {
        Invocation { command, container_id: sandbox, netns, ifname, bin_dirs: &self.config.cni_bin_dirs, timeout_seconds: self.config.cni_timeout_seconds }
    }

    /// ADD through the chain; returns the last result.
    async fn add_list(&self, list: &Value, sandbox: &str, netns: &Path, ifname: &str, runtime: &Value) -> Result<Value> {
        let mut result = Value::Null;
        for plugin in list["plugins"].as_array().into_iter().flatten() {
            let input = plugin_input(list, plugin, Some(&result), runtime);
            let output = run(&self.invocation("ADD", sandbox, netns, ifname), &input).await?;
            if !output.is_null() {
                result = output;
            }
        }
        Ok(result)
    }

    /// DEL through the chain in reverse; every plugin is tried, the first error returned.
    async fn del_list(&self, list: &Value, sandbox: &str, netns: &Path, ifname: &str, prev: &Value, runtime: &Value) -> Result<()> {
        let mut first_error = None;
        for plugin in list["plugins"].as_array().into_iter().flatten().rev() {
            let input = plugin_input(list, plugin, Some(prev), runtime);
            if let Err(e) = run(&self.invocation("DEL", sandbox, netns, ifname), &input).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn loopback_list(&self, list: &Value) -> Option<Value> {
        let installed = self.config.cni_bin_dirs.iter().any(|d| d.join("loopback").is_file());
        installed.then(|| json!({"cniVersion": list["cniVersion"], "name": "cni-loopback", "plugins": [{"type": "loopback"}]}))
    }

    async fn attach_inner(&self, request: &AttachRequest) -> Result<Attachment> {
        let (sandbox, netns) = (request.sandbox_id.as_str(), request.netns_path.as_path());
        if self.cache_path(sandbox).exists() {
            return Err(NetworkError::AlreadyExists { what: "sandbox network", name: sandbox.into() });
        }
        let list = load_conflist(&self.config.cni_conf_dir)?;
        let runtime = json!({"portMappings": port_mappings_json(&request.port_mappings)});
        if let Some(loopback) = self.loopback_list(&list) {
            self.add_list(&loopback, sandbox, netns, "lo", &json!({})).await?;
        }
        let result = match self.add_list(&list, sandbox, netns, IFNAME, &runtime).await {
            Ok(result) => result,
            Err(e) => {
                let _ = self.del_list(&list, sandbox, netns, IFNAME, &Value::Null, &runtime).await;
                return Err(e);
            }
        };
        self.write_cache(sandbox, &cache_entry(sandbox, netns, &list, &result, &runtime))?;
        let network = list["name"].as_str().unwrap_or_default();
        let interfaces: Vec<InterfaceInfo> = interface_of(&result, network).into_iter().collect();
        if let (Some(dir), Some(interface)) = (&request.files_dir, interfaces.first()) {
            let extra = super::dns::DnsConfig::extra_hosts_of(request.dns.as_ref());
            super::dns::write_files(dir, &request.hostname, Some(interface.ip), &[], request.dns.as_ref(), extra)?;
        }
        Ok(Attachment { sandbox_id: sandbox.into(), interfaces })
    }

    fn write_cache(&self, sandbox: &str, entry: &Value) -> Result<()> {
        let path = self.cache_path(sandbox);
        let temporary = path.with_extension("tmp");
        let bytes = serde_json::to_vec(entry).map_err(|e| NetworkError::InvalidArgument(e.to_string()))?;
        std::fs::write(&temporary, bytes).map_err(|e| NetworkError::io(format!("write {}", temporary.display()), e))?;
        std::fs::rename(&temporary, &path).map_err(|e| NetworkError::io(format!("rename to {}", path.display()), e))
    }

    fn cached(&self, sandbox: &str) -> Result<Option<Value>> {
        let path = self.cache_path(sandbox);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    async fn detach_inner(&self, sandbox: &str) -> Result<()> {
        let Some(entry) = self.cached(sandbox)? else { return Ok(()) };
        let netns = PathBuf::from(entry["netns"].as_str().unwrap_or_default());
        let list = &entry["config"];
        self.del_list(list, sandbox, &netns, IFNAME, &entry["result"], &entry["runtimeConfig"]).await?;
        if let Some(loopback) = self.loopback_list(list) {
            let _ = self.del_list(&loopback, sandbox, &netns, "lo", &Value::Null, &json!({})).await;
        }
        let path = self.cache_path(sandbox);
        std::fs::remove_file(&path).map_err(|e| NetworkError::io(format!("remove {}", path.display()), e))
    }

    /// CHECK through the chain with the cached result.
    pub(crate) async fn check_inner(&self, sandbox: &str) -> Result<()> {
        let entry = self.cached(sandbox)?.ok_or_else(|| NetworkError::not_found("sandbox network", sandbox))?;
        let netns = PathBuf::from(entry["netns"].as_str().unwrap_or_default());
        let list = &entry["config"];
        for plugin in list["plugins"].as_array().into_iter().flatten() {
            let input = plugin_input(list, plugin, Some(&entry["result"]), &entry["runtimeConfig"]);
            run(&self.invocation("CHECK", sandbox, &netns, IFNAME), &input).await?;
        }
        Ok(())
    }

    async fn reconcile_inner(&self, live: &[String]) -> Result<()> {
        let results = self.config.cni_cache_dir.join("results");
        let entries = std::fs::read_dir(&results).map_err(|e| NetworkError::io(format!("read {}", results.display()), e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(sandbox) = name.strip_suffix(&format!("-{IFNAME}.json")) else { continue };
            if !live.iter().any(|l| l == sandbox) {
                if let Err(e) = self.detach_inner(sandbox).await {
                    tracing::warn!(sandbox_id = sandbox, error = %e, "reconcile: CNI DEL");
                }
            }
        }
        Ok(())
    }

    fn unsupported(&self) -> NetworkError {
        let dir = self.config.cni_conf_dir.display();
        NetworkError::InvalidArgument(format!("in CNI mode the network comes from {dir}"))
    }
}

impl NetworkDriver for CniDriver {
    fn attach<'a>(&'a self, request: &'a AttachRequest) -> BoxFuture<'a, Result<Attachment>> {
        self.attach_inner(request).boxed()
    }

    fn detach<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.detach_inner(sandbox_id).boxed()
    }

    fn status<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<Option<Attachment>>> {
        async move {
            let Some(entry) = self.cached(sandbox_id)? else { return Ok(None) };
            let network = entry["networkName"].as_str().unwrap_or_default();
            let interfaces = interface_of(&entry["result"], network).into_iter().collect();
            Ok(Some(Attachment { sandbox_id: sandbox_id.into(), interfaces }))
        }
        .boxed()
    }

    fn check<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.check_inner(sandbox_id).boxed()
    }

    fn reconcile<'a>(&'a self, live: &'a [String]) -> BoxFuture<'a, Result<()>> {
        self.reconcile_inner(live).boxed()
    }

    fn create_network<'a>(&'a self, _request: &'a CreateNetwork) -> BoxFuture<'a, Result<NetworkRecord>> {
        let error = self.unsupported();
        async move { Err(error) }.boxed()
    }

    fn remove_network<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<()>> {
        let error = self.unsupported();
        async move { Err(error) }.boxed()
    }

    fn list_networks(&self) -> Result<Vec<NetworkRecord>> {
        Ok(Vec::new())
    }

    fn connect<'a>(&'a self, _request: &'a ConnectRequest) -> BoxFuture<'a, Result<InterfaceInfo>> {
        let error = self.unsupported();
        async move { Err(error) }.boxed()
    }

    fn disconnect<'a>(&'a self, _sandbox_id: &'a str, _network: &'a str) -> BoxFuture<'a, Result<()>> {
        let error = self.unsupported();
        async move { Err(error) }.boxed()
    }

    fn set_pod_cidr(&self, cidr: ipnet::Ipv4Net) -> BoxFuture<'_, Result<bool>> {
        tracing::info!(pod_cidr = %cidr, "CNI mode: the plugin configuration owns the pod subnet");
        async { Ok(false) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_get_prev_result_and_only_the_capabilities_they_ask_for() {
        let list = json!({"cniVersion": "1.0.0", "name": "net", "plugins": []});
        let runtime = json!({"portMappings": [{"hostPort": 80}]});
        let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let prev = json!({"ips": []});
        let input = plugin_input(&list, &portmap, Some(&prev), &runtime);
        assert_eq!(input["name"], "net");
        assert_eq!(input["prevResult"], prev);
        assert_eq!(input["runtimeConfig"]["portMappings"][0]["hostPort"], 80);
        let bridge = json!({"type": "bridge"});
        let input = plugin_input(&list, &bridge, None, &runtime);
        assert!(input.get("runtimeConfig").is_none() && input.get("prevResult").is_none());
    }

    #[test]
    fn the_result_gives_address_gateway_and_mac() {
        let result = json!({
            "interfaces": [{"name": "cni0", "mac": "aa"}, {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/x"}],
            "ips": [{"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 1}]
        });
        let interface = interface_of(&result, "net").unwrap();
        assert_eq!((interface.ip.to_string(), interface.prefix), ("10.88.0.2".to_string(), 16));
        assert_eq!(interface.gateway, Some(Ipv4Addr::new(10, 88, 0, 1)));
        assert_eq!(interface.mac, "02:00:00:00:00:01");
    }
}
