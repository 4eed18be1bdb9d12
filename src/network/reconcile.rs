//! Start-up reconciliation of the bridge driver: after a crash, endpoints and addresses
//! of sandboxes that are gone are dropped (their veths deleted), bridges are adopted or
//! re-created, the live sandboxes' host ports are reserved again and the nftables table
//! is rebuilt from the surviving state, so it holds exactly what the live sandboxes need,
//! and the live sandboxes on user-defined networks get their embedded DNS server back.
use std::collections::HashSet;

use super::bridge::BridgeDriver;
use super::error::{NetworkError, Result};
use super::records::{endpoint_key, EndpointRecord, ENDPOINTS, NETWORKS};
use super::{hostfiles, ipam};

impl BridgeDriver {
    pub(crate) async fn reconcile_inner(&self, live: &[String]) -> Result<()> {
        let live: HashSet<&str> = live.iter().map(String::as_str).collect();
        let endpoints: Vec<EndpointRecord> = self.store.list(ENDPOINTS)?.into_iter().map(|(_, e)| e).collect();
        let (alive, dead): (Vec<_>, Vec<_>) = endpoints.into_iter().partition(|e| live.contains(e.sandbox_id.as_str()));
        for endpoint in &dead {
            if let Err(e) = self.links.delete(&endpoint.host_veth).await {
                tracing::warn!(sandbox_id = %endpoint.sandbox_id, error = %e, "reconcile: deleting veth");
            }
        }
        self.forget_dead(&dead, &alive)?;
        for (_, network) in self.store.list(NETWORKS)? {
            self.ensure_bridge(&network).await?;
        }
        self.reserve_live_ports(&alive);
        self.apply_rules().await?;
        let sandboxes: HashSet<&str> = alive.iter().map(|e| e.sandbox_id.as_str()).collect();
        for sandbox in &sandboxes {
            hostfiles::write_for(&self.store, sandbox)?;
        }
        self.restore_name_service(&sandboxes).await;
        Ok(())
    }

    /// Serves the live sandboxes on user-defined networks again, and only them.
    async fn restore_name_service(&self, live: &HashSet<&str>) {
        self.name_service.retain(live);
        for sandbox in live {
            if let Err(e) = self.sync_name_service(sandbox).await {
                tracing::warn!(sandbox_id = %sandbox, error = %e, "reconcile: embedded DNS server");
            }
        }
    }

    /// Deletes dead endpoints and every allocation no live endpoint holds.
    fn forget_dead(&self, dead: &[EndpointRecord], alive: &[EndpointRecord]) -> Result<()> {
        let held: HashSet<(String, String)> = alive.iter().map(|e| (e.network.clone(), e.ip.to_string())).collect();
        self.store.write(|txn| {
            for endpoint in dead {
                txn.delete(ENDPOINTS, &endpoint_key(&endpoint.sandbox_id, &endpoint.network))?;
            }
            for (network, ip, _owner) in ipam::all(txn)? {
                if !held.contains(&(network.clone(), ip.clone())) {
                    if let Ok(ip) = ip.parse() {
                        ipam::release(txn, &network, ip)?;
                    }
                }
            }
            Ok::<_, NetworkError>(())
        })
    }

    fn reserve_live_ports(&self, alive: &[EndpointRecord]) {
        for endpoint in alive.iter().filter(|e| !e.port_mappings.is_empty()) {
            if let Err(e) = self.reserve_live_ports_of(&endpoint.sandbox_id, &endpoint.port_mappings) {
                tracing::warn!(sandbox_id = %endpoint.sandbox_id, error = %e, "reconcile: host port");
            }
        }
    }
}
