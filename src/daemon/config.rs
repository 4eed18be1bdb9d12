//! berthd's configuration: `/etc/berth/config.toml` (optional; every key has a default),
//! overridden by command-line flags.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Persistent data: metadata store, content, snapshots, bundles.
    pub root: PathBuf,
    /// Runtime state: sockets, shim state, pinned namespaces.
    pub state: PathBuf,
    /// The CRI socket.
    pub cri_socket: PathBuf,
    /// The Docker Engine API socket.
    pub docker_socket: PathBuf,
    /// Group owning the sockets (besides root); none means root only.
    pub socket_group: Option<String>,
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter).
    pub log_level: String,
    /// The shim binary; default: `berth-shim` next to berthd, else on the PATH.
    pub shim_binary: Option<PathBuf>,
    /// The pod PID namespace holder; default: `berth-pod-init` beside berthd, else on the PATH.
    pub pod_init_binary: Option<PathBuf>,
    /// The cgroup driver reported to the kubelet: `cgroupfs` or `systemd`.
    pub cgroup_driver: String,
    /// The cgroup under which containers of pods without a cgroup parent go.
    pub cgroup_parent: String,
    /// Runtime handlers by name. The empty name and `berth` are the built-in runtime.
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// Per registry host: mirrors, plain-HTTP permission, credentials.
    pub registry: std::collections::BTreeMap<String, crate::image::RegistryHost>,
    /// Pull settings: concurrent downloads, timeouts.
    pub pull: crate::image::PullSettings,
    /// The network: built-in bridge or CNI (see the network module).
    pub network: crate::network::NetworkConfig,
    /// The CRI's settings.
    pub cri: CriConfig,
    /// The streaming server behind Exec, Attach and PortForward.
    pub streaming: crate::streaming::StreamingConfig,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeHandler {
    /// A runc-compatible binary (Debian's runc or crun); none means berth's runtime.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriConfig {
    /// Image whose name a sandbox reports (no image is pulled for a sandbox).
    pub sandbox_image: String,
    /// How long ExecSync output may grow, per stream, before it is cut (both streams
    /// together must fit in one gRPC message of 16 MiB).
    pub max_exec_output_bytes: usize,
}

impl Default for CriConfig {
    fn default() -> Self {
        CriConfig {
            sandbox_image: "registry.k8s.io/pause:3.10".into(),
            max_exec_output_bytes: 7 << 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/var/lib/berth".into(),
            state: "/run/berth".into(),
            cri_socket: "/run/berth/berth.sock".into(),
            docker_socket: "/run/berth/docker.sock".into(),
            socket_group: None,
            log_level: "info".into(),
            shim_binary: None,
            pod_init_binary: None,
            cgroup_driver: "cgroupfs".into(),
            cgroup_parent: "/berth".into(),
            runtimes: BTreeMap::new(),
            registry: Default::default(),
            pull: Default::default(),
            network: Default::default(),
            cri: CriConfig::default(),
            streaming: Default::default(),
        }
    }
}

impl Config {
    /// Reads `path`; a missing file is an error only when it was asked for by name.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(path) => (path, true),
            None => (Path::new(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Config::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_string(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.cgroup_driver.as_str(), "cgroupfs" | "systemd") {
            return Err(ConfigError::Invalid(format!(
                "cgroup_driver {:?}: expected \"cgroupfs\" or \"systemd\"",
                self.cgroup_driver
            )));
        }
        for (name, path) in [("root", &self.root), ("state", &self.state), ("cri_socket", &self.cri_socket), ("docker_socket", &self.docker_socket)] {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid(format!("{name} must be an absolute path, not {}", path.display())));
            }
        }
        Ok(())
    }

    /// What the images service needs of the configuration.
    pub fn registry_config(&self) -> crate::image::RegistryConfig {
        crate::image::RegistryConfig { registry: self.registry.clone(), pull: self.pull.clone() }
    }

    /// The runtime binary for a CRI runtime handler: `None` is berth's own runtime.
    pub fn runtime_for_handler(&self, handler: &str) -> Result<Option<PathBuf>, ConfigError> {
        if handler.is_empty() || handler == "berth" {
            return Ok(self.runtimes.get(handler).and_then(|h| h.path.clone()));
        }
        match self.runtimes.get(handler) {
            Some(runtime) => Ok(runtime.path.clone()),
            None => Err(ConfigError::Invalid(format!("runtime handler {handler:?} is not configured"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = Config::parse("", "test").expect("parse");
        assert_eq!(config.root, PathBuf::from("/var/lib/berth"));
        assert_eq!(config.cri_socket, PathBuf::from("/run/berth/berth.sock"));
    }

    #[test]
    fn mirrors_runtimes_and_bad_keys() {
        let text = r#"
            root = "/tmp/x"
            [runtimes.crun]
            path = "/usr/bin/crun"
            [registry."registry.k8s.io"]
            mirrors = ["http://127.0.0.1:5000"]
        "#;
        let config = Config::parse(text, "test").expect("parse");
        assert_eq!(config.runtime_for_handler("crun").expect("crun"), Some("/usr/bin/crun".into()));
        assert_eq!(config.runtime_for_handler("").expect("default"), None);
        assert!(config.runtime_for_handler("kata").is_err());
        assert!(config.registry.contains_key("registry.k8s.io"));
        let error = Config::parse("bogus = 1", "test").expect_err("unknown key");
        assert!(error.to_string().contains("bogus"), "{error}");
        assert!(Config::parse("root = \"relative\"", "test").is_err());
        let config = Config::parse("[streaming]\naddress = \"127.0.0.1:10010\"\ntoken_ttl_seconds = 5", "test").expect("streaming");
        assert_eq!(config.streaming.address, "127.0.0.1:10010");
        assert_eq!(config.streaming.token_ttl_seconds, 5);
    }
}
