//! The name files of a sandbox: `hosts`, `hostname` and `resolv.conf`. On user-defined
//! networks, name resolution between containers is these files: every endpoint's
//! `hosts` lists its peers on the networks it shares with them, and is rewritten in
//! place (the container bind-mounts the file, so its inode must stay) on every attach
//! and detach of a peer. resolv.conf takes the host's resolvers (loopback ones dropped,
//! as Docker does, since they are unreachable from the sandbox) or the given DNS config.
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{NetworkError, Result};

/// DNS settings a sandbox asks for (CRI `DNSConfig`, Docker `--dns*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
    /// Lines added to `hosts` (Docker's `--add-host`: `IP\tNAME`).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
}

impl DnsConfig {
    /// Whether it says anything about resolv.conf (it may carry only hosts lines).
    fn names_resolvers(&self) -> bool {
        !self.servers.is_empty() || !self.searches.is_empty() || !self.options.is_empty()
    }

    /// The hosts lines of an optional config.
    pub fn extra_hosts_of(dns: Option<&DnsConfig>) -> &[String] {
        dns.map_or(&[], |d| d.extra_hosts.as_slice())
    }
}

/// A name another sandbox is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// The host's resolver configuration.
pub(crate) const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Docker's fallback when the host has no usable resolver.
const FALLBACK_SERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// Writes `hosts` (with `extra` lines last), `hostname` and `resolv.conf` into `dir`.
pub fn write_files(dir: &Path, hostname: &str, ip: Option<Ipv4Addr>, peers: &[Peer], dns: Option<&DnsConfig>, extra: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| NetworkError::io(format!("mkdir {}", dir.display()), e))?;
    write_in_place(&dir.join("hostname"), &format!("{hostname}\n"))?;
    write_hosts(dir, hostname, ip, peers, extra)?;
    let dns = match dns {
        Some(dns) if dns.names_resolvers() => dns.clone(),
        _ => host_resolvers(Path::new(HOST_RESOLV_CONF)),
    };
    write_in_place(&dir.join("resolv.conf"), &resolv_conf(&dns))
}

/// Rewrites only `hosts` (a peer came or went).
pub fn write_hosts(dir: &Path, hostname: &str, ip: Option<Ipv4Addr>, peers: &[Peer], extra: &[String]) -> Result<()> {
    let mut content = hosts(hostname, ip, peers);
    for line in extra {
        content.push_str(line);
        content.push('\n');
    }
    write_in_place(&dir.join("hosts"), &content)
}

/// Truncates and writes, keeping the inode that containers have bind-mounted.
fn write_in_place(path: &Path, content: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| NetworkError::io(format!("open {}", path.display()), e))?;
    file.write_all(content.as_bytes()).map_err(|e| NetworkError::io(format!("write {}", path.display()), e))
}

pub fn hosts(hostname: &str, ip: Option<Ipv4Addr>, peers: &[Peer]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    for peer in peers {
        out.push_str(&format!("{}\t{}\n", peer.ip, peer.names.join(" ")));
    }
    out
}

pub fn resolv_conf(dns: &DnsConfig) -> String {
    let mut out = String::new();
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

/// resolv.conf of a sandbox on a user-defined network: the embedded server only, the
/// search domains and options of the sandbox's own config or else the host's, and
/// `ndots:0` (as dockerd writes it) unless an ndots option is given.
pub fn embedded_resolver_config(own: Option<&DnsConfig>, host_resolv_conf: &Path) -> DnsConfig {
    let host = parse_resolv_conf(&std::fs::read_to_string(host_resolv_conf).unwrap_or_default());
    let own = own.cloned().unwrap_or_default();
    let searches = if own.searches.is_empty() { host.searches } else { own.searches };
    let mut options = if own.options.is_empty() { host.options } else { own.options };
    if !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    DnsConfig { servers: vec![super::embedded_dns::ADDRESS.to_string()], searches, options, extra_hosts: own.extra_hosts }
}

/// The host's resolv.conf without loopback nameservers; Docker's fallback if none is left.
pub fn host_resolvers(path: &Path) -> DnsConfig {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut dns = parse_resolv_conf(&text);
    dns.servers.retain(|s| !is_loopback(s));
    if dns.servers.is_empty() {
        dns.servers = FALLBACK_SERVERS.iter().map(|s| s.to_string()).collect();
    }
    dns
}

fn is_loopback(server: &str) -> bool {
    server.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let rest = |words: std::str::SplitWhitespace| words.map(str::to_string).collect::<Vec<_>>();
        match words.next() {
            Some("nameserver") => dns.servers.extend(rest(words)),
            Some("search") | Some("domain") => dns.searches = rest(words),
            Some("options") => dns.options.extend(rest(words)),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp\noptions ndots:2\n").unwrap();
        let dns = host_resolvers(&path);
        assert_eq!(dns.servers, vec!["10.0.0.2"]);
        assert_eq!(resolv_conf(&dns), "nameserver 10.0.0.2\nsearch corp\noptions ndots:2\n");
        std::fs::write(&path, "nameserver ::1\n").unwrap();
        assert_eq!(host_resolvers(&path).servers, vec!["8.8.8.8", "8.8.4.4"]);
    }

    #[test]
    fn user_networks_name_the_embedded_server_with_the_host_search_domains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.53\nsearch corp\noptions edns0\n").unwrap();
        let given = DnsConfig { servers: vec!["10.0.0.2".into()], ..Default::default() };
        let conf = resolv_conf(&embedded_resolver_config(Some(&given), &path));
        assert_eq!(conf, "nameserver 127.0.0.11\nsearch corp\noptions edns0 ndots:0\n");
        let given = DnsConfig { searches: vec!["example".into()], options: vec!["ndots:3".into()], ..Default::default() };
        let conf = resolv_conf(&embedded_resolver_config(Some(&given), &path));
        assert_eq!(conf, "nameserver 127.0.0.11\nsearch example\noptions ndots:3\n");
    }

    #[test]
    fn hosts_rewrite_keeps_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let peer = Peer { ip: Ipv4Addr::new(10, 0, 0, 3), names: vec!["web".into(), "www".into()] };
        write_files(dir.path(), "app", Some(Ipv4Addr::new(10, 0, 0, 2)), &[], None, &[]).unwrap();
        let before = std::fs::metadata(dir.path().join("hosts")).unwrap().ino();
        write_hosts(dir.path(), "app", Some(Ipv4Addr::new(10, 0, 0, 2)), &[peer], &[]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("hosts")).unwrap();
        assert!(text.contains("10.0.0.2\tapp\n10.0.0.3\tweb www\n"), "{text}");
        assert_eq!(std::fs::metadata(dir.path().join("hosts")).unwrap().ino(), before);
    }
}
