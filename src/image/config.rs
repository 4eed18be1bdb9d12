//! Registry and pull settings from `/etc/berth/config.toml`:
//!
//! ```toml
//! [pull]
//! max_concurrent_downloads = 3
//!
//! [registry."registry.k8s.io"]
//! mirrors = ["http://127.0.0.1:5000", "https://mirror.example"]
//!
//! [registry."127.0.0.1:5000"]
//! insecure = true            # plain HTTP allowed
//! username = "me"            # optional default credentials
//! password = "secret"
//! ```
//!
//! [`RegistryConfig`] reads the `registry` and `pull` tables of the whole file and
//! ignores every other key, so the daemon can `#[serde(flatten)]` it into its own
//! config or parse the file twice.
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Registry hosts and pull settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Per registry host (as written in references, `docker.io` for Docker Hub).
    pub registry: BTreeMap<String, RegistryHost>,
    pub pull: PullSettings,
}

/// Settings of one registry host.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RegistryHost {
    /// Endpoints tried in turn before the host itself: `http://host:port` (plain HTTP),
    /// `https://host` or a bare `host[:port]` (HTTPS unless that host is insecure).
    pub mirrors: Vec<String>,
    /// Whether plain HTTP is allowed for this host.
    pub insecure: bool,
    /// Default credentials, used when a pull brings none.
    pub username: Option<String>,
    pub password: Option<String>,
    /// A registry (bearer) token to present instead of a user name and password.
    pub registry_token: Option<String>,
}

/// How pulls behave.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PullSettings {
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// Seconds to wait for a TCP/TLS connection.
    pub connect_timeout_seconds: u64,
    /// Seconds a response may stay silent before the request fails.
    pub read_timeout_seconds: u64,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings { max_concurrent_downloads: 3, connect_timeout_seconds: 10, read_timeout_seconds: 30 }
    }
}

impl PullSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds.max(1))
    }
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_seconds.max(1))
    }
}

/// Credentials for one pull or push (CRI's AuthConfig, Docker's X-Registry-Auth).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    /// An OAuth refresh token (Docker's `identitytoken`).
    IdentityToken(String),
    /// A bearer token for the registry itself (CRI's `registry_token`).
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
            Credentials::RegistryToken(_) => write!(f, "RegistryToken(***)"),
        }
    }
}

/// One place to fetch from: a mirror or the registry host itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub plain_http: bool,
    pub is_mirror: bool,
}

impl RegistryConfig {
    /// Parses the whole config file's text.
    pub fn from_toml(text: &str) -> Result<RegistryConfig, toml::de::Error> {
        toml::from_str(text)
    }

    fn host_is_insecure(&self, host: &str) -> bool {
        self.registry.get(host).is_some_and(|settings| settings.insecure)
    }

    /// The endpoints for `registry_host`, mirrors first, in the configured order.
    pub fn endpoints(&self, registry_host: &str) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        if let Some(settings) = self.registry.get(registry_host) {
            for mirror in &settings.mirrors {
                let (host, plain_http) = match mirror.split_once("://") {
                    Some(("http", rest)) => (rest, true),
                    Some((_, rest)) => (rest, self.host_is_insecure(rest)),
                    None => (mirror.as_str(), self.host_is_insecure(mirror)),
                };
                let host = host.trim_end_matches('/').split('/').next().unwrap_or(host).to_string();
                endpoints.push(Endpoint { host, plain_http, is_mirror: true });
            }
        }
        let plain_http = self.host_is_insecure(registry_host);
        endpoints.push(Endpoint { host: registry_host.to_string(), plain_http, is_mirror: false });
        endpoints
    }

    /// Credentials configured for `host`, if any.
    pub fn credentials_for(&self, host: &str) -> Option<Credentials> {
        let settings = self.registry.get(host)?;
        if let Some(token) = &settings.registry_token {
            return Some(Credentials::RegistryToken(token.clone()));
        }
        let username = settings.username.clone()?;
        Some(Credentials::Basic { username, password: settings.password.clone().unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_config_file_parses_and_mirrors_come_first() {
        let text = r#"
            root = "/var/lib/berth"
            [daemon]
            debug = true
            [pull]
            max_concurrent_downloads = 5
            [registry."registry.k8s.io"]
            mirrors = ["http://127.0.0.1:5000", "https://mirror.example/v2/", "10.0.0.1:80"]
            [registry."10.0.0.1:80"]
            insecure = true
            [registry."secure.example"]
            username = "me"
            password = "pw"
        "#;
        let config = RegistryConfig::from_toml(text).unwrap();
        assert_eq!(config.pull.max_concurrent_downloads, 5);
        assert_eq!(config.pull.read_timeout_seconds, 30);
        let endpoints = config.endpoints("registry.k8s.io");
        let summary: Vec<(&str, bool)> = endpoints.iter().map(|e| (e.host.as_str(), e.plain_http)).collect();
        assert_eq!(
            summary,
            [("127.0.0.1:5000", true), ("mirror.example", false), ("10.0.0.1:80", true), ("registry.k8s.io", false)]
        );
        assert_eq!(config.endpoints("secure.example").len(), 1);
        assert!(!config.endpoints("secure.example")[0].plain_http);
        assert!(matches!(config.credentials_for("secure.example"), Some(Credentials::Basic { .. })));
        assert_eq!(RegistryConfig::from_toml("").unwrap(), RegistryConfig::default());
    }
}
