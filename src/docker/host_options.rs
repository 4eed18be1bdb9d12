//! HostConfig settings that shape a Docker container's sandbox and process beside its
//! network: `--pid` and `--ipc` (a namespace of its own or the host's), `--add-host`
//! lines for its hosts file, `--shm-size`, `--group-add`, and the DNS settings
//! (`--dns`, `--dns-search`, `--dns-option`, each alone or together). What berth cannot
//! do is refused with a 400 naming it, never dropped silently.
use std::net::IpAddr;

use super::create::HostConfig;
use super::{DockerError, DockerResult};
use crate::core::{DnsSettings, NamespaceMode};

/// The sandbox's pid and ipc modes.
pub struct NamespaceModes {
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
}

pub fn namespace_modes(host: &HostConfig) -> DockerResult<NamespaceModes> {
    let pid = match host.pid_mode.as_deref().unwrap_or("") {
        "" => NamespaceMode::Container,
        "host" => NamespaceMode::Node,
        other => return Err(unsupported("--pid", other)),
    };
    let ipc = match host.ipc_mode.as_deref().unwrap_or("") {
        "" | "private" | "shareable" => NamespaceMode::Pod,
        "host" => NamespaceMode::Node,
        other => return Err(unsupported("--ipc", other)),
    };
    match host.uts_mode.as_deref().unwrap_or("") {
        "" => {}
        other => return Err(unsupported("--uts", other)),
    }
    Ok(NamespaceModes { pid, ipc })
}

fn unsupported(flag: &str, value: &str) -> DockerError {
    DockerError::bad_request(format!("invalid {flag} mode {value:?}: berthd supports only the default and \"host\""))
}

/// `--add-host NAME:IP` (or `NAME=IP`; IPv6 addresses may be bracketed) as hosts-file
/// lines; `host-gateway` stands for `gateway()`, the default bridge's address (looked up
/// only when an entry names it).
pub fn extra_hosts(host: &HostConfig, gateway: impl Fn() -> Option<IpAddr>) -> DockerResult<Vec<String>> {
    let mut lines = Vec::new();
    for entry in host.extra_hosts.iter().flatten() {
        let (name, address) = entry
            .split_once('=')
            .or_else(|| entry.split_once(':'))
            .ok_or_else(|| DockerError::bad_request(format!("invalid IP address in add-host: {entry:?} (want NAME:IP)")))?;
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let ip = match address {
            "host-gateway" => gateway().ok_or_else(|| DockerError::bad_request("unable to derive the IP value for host-gateway: the default bridge has no gateway"))?,
            literal => literal.parse::<IpAddr>().map_err(|_| DockerError::bad_request(format!("invalid IP address in add-host: {address:?}")))?,
        };
        if name.is_empty() {
            return Err(DockerError::bad_request(format!("invalid add-host {entry:?}: no host name")));
        }
        lines.push(format!("{ip}\t{name}"));
    }
    Ok(lines)
}

/// The sandbox's DNS settings: present when any of `--dns`, `--dns-search`,
/// `--dns-option` or `--add-host` is. Search domains or options without servers keep
/// the host's servers, as dockerd does.
pub fn dns_settings(host: &HostConfig, extra_hosts: Vec<String>) -> Option<DnsSettings> {
    let mut servers = host.dns.clone().unwrap_or_default();
    let tunes_resolver = host.dns_search.as_ref().is_some_and(|s| !s.is_empty()) || host.dns_options.as_ref().is_some_and(|o| !o.is_empty());
    if servers.is_empty() && tunes_resolver {
        servers = crate::network::host_resolvers().servers;
    }
    let settings = DnsSettings {
        servers,
        searches: host.dns_search.clone().unwrap_or_default(),
        options: host.dns_options.clone().unwrap_or_default(),
        extra_hosts,
    };
    let empty = settings.servers.is_empty() && settings.searches.is_empty() && settings.options.is_empty() && settings.extra_hosts.is_empty();
    (!empty).then_some(settings)
}

/// `--shm-size` in bytes (0 or absent: the default).
pub fn shm_bytes(host: &HostConfig) -> DockerResult<Option<u64>> {
    match host.shm_size {
        None | Some(0) => Ok(None),
        Some(size) if size < 0 => Err(DockerError::bad_request("SHM size can not be less than 0")),
        Some(size) => Ok(Some(size as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hosts(entries: &[&str]) -> HostConfig {
        HostConfig { extra_hosts: Some(entries.iter().map(|e| e.to_string()).collect()), ..HostConfig::default() }
    }

    #[test]
    fn add_host_forms() {
        let gateway = || Some("172.17.0.1".parse().expect("ip"));
        let lines = extra_hosts(&with_hosts(&["db:10.0.0.5", "web=10.0.0.6", "v6:[fd00::1]", "v6b:fd00::2", "gw:host-gateway"]), gateway).expect("valid");
        assert_eq!(lines, ["10.0.0.5\tdb", "10.0.0.6\tweb", "fd00::1\tv6", "fd00::2\tv6b", "172.17.0.1\tgw"]);
        assert!(extra_hosts(&with_hosts(&["db:not-an-ip"]), gateway).is_err());
        assert!(extra_hosts(&with_hosts(&["nocolon"]), gateway).is_err());
        assert!(extra_hosts(&with_hosts(&["gw:host-gateway"]), || None).is_err());
    }

    #[test]
    fn modes_and_refusals() {
        let host = HostConfig { pid_mode: Some("host".into()), ipc_mode: Some("host".into()), ..HostConfig::default() };
        let modes = namespace_modes(&host).expect("host modes");
        assert_eq!((modes.pid, modes.ipc), (NamespaceMode::Node, NamespaceMode::Node));
        let joined = HostConfig { pid_mode: Some("container:other".into()), ..HostConfig::default() };
        assert!(namespace_modes(&joined).is_err());
        assert!(dns_settings(&HostConfig::default(), Vec::new()).is_none());
        let search_only = HostConfig { dns_search: Some(vec!["example.com".into()]), ..HostConfig::default() };
        assert_eq!(dns_settings(&search_only, Vec::new()).map(|d| d.searches), Some(vec!["example.com".to_string()]));
    }
}
