//! The embedded DNS server at 127.0.0.11, as dockerd has it: every sandbox on at least
//! one user-defined network gets a UDP and a TCP socket on 127.0.0.11:53 inside its own
//! network namespace, served by the daemon's runtime (no process, no NAT rule). Peers
//! on shared networks resolve by hostname, alias and `--link` alias (`names`); other
//! names are forwarded upstream from the daemon's namespace (`forward`). The default
//! bridge and CNI pods keep plain resolv.conf files and get no server.
mod answer;
mod forward;
mod names;
mod server;
mod socket;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::dns::{embedded_resolver_config, HOST_RESOLV_CONF};
use super::error::Result;
use super::hostfiles::{all_endpoints, user_networks};
use super::records::EndpointRecord;
use crate::store::Store;

/// Where the server listens inside each sandbox.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The running servers, by sandbox.
#[derive(Default)]
pub(crate) struct EmbeddedDns {
    servers: Mutex<HashMap<String, server::Server>>,
}

/// The sandbox's endpoints on user-defined networks, first interface first.
pub(crate) fn user_endpoints_of(store: &Store, sandbox_id: &str) -> Result<Vec<EndpointRecord>> {
    let user = user_networks(store)?;
    let mut own: Vec<EndpointRecord> =
        all_endpoints(store)?.into_iter().filter(|e| e.sandbox_id == sandbox_id && user.contains(&e.network)).collect();
    own.sort_by(|a, b| a.interface.cmp(&b.interface));
    Ok(own)
}

impl EmbeddedDns {
    fn servers(&self) -> MutexGuard<'_, HashMap<String, server::Server>> {
        self.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serves `sandbox_id` if it is on a user-defined network and is not served yet;
    /// stops serving it if it is on none any more. Call after any change to its
    /// endpoints (attach, connect, disconnect) and at start-up.
    pub(crate) async fn sync(&self, store: &Store, sandbox_id: &str) -> Result<()> {
        let own = user_endpoints_of(store, sandbox_id)?;
        let Some(first) = own.first() else {
            self.stop(sandbox_id);
            return Ok(());
        };
        if self.servers().contains_key(sandbox_id) {
            return Ok(());
        }
        let sockets = socket::bind_in(&first.netns_path).await?;
        let host = Path::new(HOST_RESOLV_CONF);
        let resolver = answer::Resolver {
            store: store.clone(),
            sandbox_id: sandbox_id.to_string(),
            searches: embedded_resolver_config(first.dns.as_ref(), host).searches,
            upstreams: forward::Upstreams::choose(first.dns.as_ref(), host),
        };
        tracing::debug!(sandbox_id, upstreams = ?resolver.upstreams.servers, "embedded DNS: serving");
        self.servers().insert(sandbox_id.to_string(), server::Server::start(sockets, resolver));
        Ok(())
    }

    /// Closes the sandbox's sockets (idempotent).
    pub(crate) fn stop(&self, sandbox_id: &str) {
        self.servers().remove(sandbox_id);
    }

    /// Stops every server whose sandbox is not in `live`.
    pub(crate) fn retain(&self, live: &HashSet<&str>) {
        self.servers().retain(|sandbox, _| live.contains(sandbox.as_str()));
    }
}
