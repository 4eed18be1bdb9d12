//! The networks of a sandbox that exists already: connect one more, disconnect one
//! (Docker's `network connect`/`disconnect`). The network module plugs or unplugs the
//! interface; the sandbox's record keeps the list of networks and addresses, so that
//! inspect and a later attach see the same.
use super::*;
use crate::network::{ConnectRequest, EndpointOptions, InterfaceInfo};

/// The network module's form of what a sandbox asks of one network.
pub(crate) fn endpoint_options(network: &SandboxNetwork) -> CoreResult<EndpointOptions> {
    let ipv4 = match network.ipv4.as_str() {
        "" => None,
        text => Some(text.parse().map_err(|_| CoreError::InvalidArgument(format!("invalid IPv4 address: {text}")))?),
    };
    Ok(EndpointOptions { aliases: network.aliases.clone(), ipv4 })
}

impl Core {
    /// Plugs `network` into the sandbox `sandbox_id`, running or not.
    /// A released sandbox (stopped Docker container) only records it: None.
    pub async fn connect_network(&self, namespace: &str, sandbox_id: &str, network: SandboxNetwork) -> CoreResult<Option<InterfaceInfo>> {
        let _guard = self.lock_pod(namespace, sandbox_id).await;
        let record = self.own_network_sandbox(namespace, sandbox_id)?;
        if record.network_released {
            self.network_record(&network.name)?;
            self.record_networks(&record, move |networks| networks.push(network)).await?;
            return Ok(None);
        }
        let mut options = endpoint_options(&network)?;
        options.aliases.insert(0, record.spec.name.clone());
        let request = ConnectRequest {
            sandbox_id: record.id.clone(),
            network: network.name.clone(),
            options,
            netns_path: record.netns.clone().unwrap_or_default().into(),
            hostname: record.spec.hostname.clone(),
            files_dir: Some(self.paths.sandbox_dir(&record.id)),
            dns: super::sandbox::dns_config(&record.spec),
            port_mappings: record.spec.port_mappings.iter().map(super::sandbox::port_mapping).collect::<CoreResult<_>>()?,
        };
        let interface = self.network.connect(&request).await?;
        self.record_networks(&record, move |networks| networks.push(network)).await?;
        Ok(Some(interface))
    }

    /// Unplugs `network` from the sandbox `sandbox_id`.
    pub async fn disconnect_network(&self, namespace: &str, sandbox_id: &str, network: &str) -> CoreResult<()> {
        let _guard = self.lock_pod(namespace, sandbox_id).await;
        let record = self.own_network_sandbox(namespace, sandbox_id)?;
        if !record.network_released {
            self.network.disconnect(&record.id, network).await?;
        }
        self.record_networks(&record, |networks| networks.retain(|n| n.name != network)).await
    }

    /// The network module's record of `name` (NotFound when there is none).
    fn network_record(&self, name: &str) -> CoreResult<crate::network::NetworkRecord> {
        let records = self.network.network_records()?;
        records.into_iter().find(|r| r.name == name).ok_or_else(|| crate::network::NetworkError::not_found("network", name).into())
    }

    fn own_network_sandbox(&self, namespace: &str, sandbox_id: &str) -> CoreResult<SandboxRecord> {
        let record = self.sandbox(namespace, sandbox_id)?;
        if record.spec.network == NamespaceMode::Node || record.netns.is_none() || record.spec.network_of.is_some() {
            return Err(CoreError::FailedPrecondition(format!("sandbox {} has no network namespace of its own", record.id)));
        }
        Ok(record)
    }

    /// Writes the sandbox's network list (changed by `change`) and its addresses as the
    /// network module now has them.
    async fn record_networks(&self, record: &SandboxRecord, change: impl FnOnce(&mut Vec<SandboxNetwork>)) -> CoreResult<()> {
        let interfaces = self.network.status(&record.id).await?.map(|a| a.interfaces).unwrap_or_default();
        let default = || vec![SandboxNetwork { name: self.network.config().default_network.clone(), ..SandboxNetwork::default() }];
        let mut networks = record.spec.networks.clone().unwrap_or_else(default);
        change(&mut networks);
        self.write_interfaces(record, interfaces, move |stored| stored.spec.networks = Some(networks))
    }

    /// Stores the sandbox's interfaces (and addresses) with a further change to its record.
    pub(super) fn write_interfaces(&self, record: &SandboxRecord, interfaces: Vec<InterfaceInfo>, change: impl FnOnce(&mut SandboxRecord)) -> CoreResult<()> {
        let key = record_key(&record.namespace, &record.id);
        self.store.write(|txn| {
            if let Some(mut stored) = txn.get(SANDBOXES, &key)? {
                change(&mut stored);
                stored.ips = interfaces.iter().map(|i| i.ip.to_string()).collect();
                stored.interfaces = interfaces;
                txn.put(SANDBOXES, &key, &stored)?;
            }
            Ok::<(), StoreError>(())
        })?;
        Ok(())
    }
}
