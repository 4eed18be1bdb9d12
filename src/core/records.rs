//! The records the core keeps for sandboxes and containers: what was asked for (the
//! spec) and what happened (state, times, exit), as stored in the metadata store.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::Table;

pub const SANDBOXES: Table<SandboxRecord> = Table::new("sandboxes");
pub const CONTAINERS: Table<ContainerRecord> = Table::new("containers");
/// `<namespace>/<kind>/<name>` -> id: names are unique per namespace and kind.
pub const NAMES: Table<String> = Table::new("names");

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NamespaceMode {
    /// The pod's own namespace, shared by its containers.
    #[default]
    Pod,
    /// Each container its own.
    Container,
    /// The host's.
    Node,
    /// Another container's (pid only).
    Target,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsSettings {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
    /// Lines added to the sandbox's `hosts` (Docker's `--add-host`).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: String,
}

/// One network a sandbox joins, and what its endpoint there asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxNetwork {
    pub name: String,
    /// Names the sandbox answers to on this network only.
    pub aliases: Vec<String>,
    /// A fixed IPv4 address; empty: the lowest free one.
    pub ipv4: String,
}

/// What a pod sandbox was asked to be.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Unique within the namespace.
    pub name: String,
    pub hostname: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub log_directory: String,
    pub dns: Option<DnsSettings>,
    pub port_mappings: Vec<PortMapping>,
    pub cgroup_parent: String,
    pub network: NamespaceMode,
    /// The networks of a sandbox with its own network namespace, in interface order:
    /// None is the default network, an empty list loopback only (Docker's `none`).
    #[serde(default)]
    pub networks: Option<Vec<SandboxNetwork>>,
    /// Joins the network namespace of this other sandbox (of the same namespace) instead
    /// of one of its own: Docker's `--network container:NAME`.
    #[serde(default)]
    pub network_of: Option<String>,
    /// Docker's `--link`s: names only this sandbox resolves to a peer sandbox.
    #[serde(default)]
    pub links: Vec<crate::network::LinkAlias>,
    pub ipc: NamespaceMode,
    /// The size of the pod's /dev/shm (none: the default, 64 MiB).
    #[serde(default)]
    pub shm_bytes: Option<u64>,
    /// The pod-level pid mode; containers may ask for their own.
    pub pid: NamespaceMode,
    pub sysctls: Labels,
    /// A user namespace of the pod's own, with these maps (none: the host's).
    #[serde(default)]
    pub user_namespace: Option<UserNamespaceSpec>,
    pub runtime_handler: String,
    pub privileged: bool,
    /// The front door's own description (for CRI: the PodSandboxMetadata), kept as is.
    pub front: serde_json::Value,
}

/// Settings of a container that the CRI has no words for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerExtras {
    pub tmpfs: Vec<TmpfsMount>,
    pub rlimits: Vec<ProcessRlimit>,
    /// A static init on the host, mounted at `/sbin/docker-init` and run as the
    /// container's first process, with the command as its child.
    pub init_binary: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TmpfsMount {
    pub container_path: String,
    /// Mount options beside the defaults (`size=64m`, `mode=1777`, `exec`...).
    pub options: Vec<String>,
}

/// One resource limit of the container's processes (`RLIMIT_NOFILE`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRlimit {
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// One range of a user namespace's id map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// The uid and gid maps of a pod's user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespaceSpec {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl UserNamespaceSpec {
    /// The maps as the kernel's `uid_map`/`gid_map` files take them.
    pub fn map_file(maps: &[IdMap]) -> String {
        maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length)).collect()
    }

    /// The maps as overlay mount options (`container:host:length`, comma separated).
    pub fn mount_option(maps: &[IdMap]) -> String {
        maps.iter().map(|m| format!("{}:{}:{}", m.container_id, m.host_id, m.length)).collect::<Vec<_>>().join(",")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// `k8s` for the CRI, `docker` for the façade.
    pub namespace: String,
    pub spec: SandboxSpec,
    pub state: SandboxState,
    pub created_at: i64,
    /// The pinned namespaces (absent when the host's is used).
    pub netns: Option<String>,
    pub ipcns: Option<String>,
    pub utsns: Option<String>,
    /// The pinned user namespace, for pods with one of their own.
    #[serde(default)]
    pub userns: Option<String>,
    pub shm: Option<String>,
    /// The shared PID namespace's init, for pods whose pid mode is `Pod`.
    #[serde(default)]
    pub pod_init: Option<super::pod_init::PodInit>,
    /// The shims that served the pod's containers (shut down with the pod).
    #[serde(default)]
    pub shims: Vec<String>,
    pub ips: Vec<String>,
    /// The sandbox's interfaces, as the network module made them.
    #[serde(default)]
    pub interfaces: Vec<crate::network::InterfaceInfo>,
    /// Whether creation finished (a record without it is cleaned up at start-up).
    pub complete: bool,
    /// Docker: the container is stopped and its endpoints are given back (see
    /// `network_release`); its networks are attached again at the next start.
    #[serde(default)]
    pub network_released: bool,
    /// The pod's cgroup parent directory when berth made it (removed with the pod).
    #[serde(default)]
    pub owned_cgroup_parent: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountSpec {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    /// `private`, `rslave` (host to container) or `rshared` (bidirectional).
    pub propagation: String,
    /// Read-only all the way down: submounts of the source too (needs `readonly`).
    #[serde(default)]
    pub recursive_read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub container_path: String,
    pub host_path: String,
    pub permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_bytes: i64,
    pub memory_swap_limit_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub hugepage_limits: BTreeMap<String, u64>,
    pub unified: Labels,
    /// `linux.resources.pids.limit` (cgroup v1 or v2): 0 unset, negative unlimited.
    #[serde(default)]
    pub pids_limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum SeccompProfile {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A JSON profile (Docker's format or the OCI `linux.seccomp` object) on the host.
    Localhost(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplementalGroupsPolicy {
    /// The requested groups and the user's groups in the image's `/etc/group`.
    #[default]
    Merge,
    /// Only the requested groups (and the primary group).
    Strict,
}

/// The identity a container's process runs with, as its config.json says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecuritySettings {
    pub privileged: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    pub supplemental_groups: Vec<i64>,
    /// Groups by name or number, looked up in the image (Docker's `--group-add`).
    #[serde(default)]
    pub supplemental_group_names: Vec<String>,
    /// Whether the image's `/etc/group` memberships of the user are added (Merge) or not.
    #[serde(default)]
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    pub seccomp: SeccompProfile,
    /// Ignored on hosts without AppArmor (recorded for status).
    pub apparmor: String,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub pid: NamespaceMode,
    /// For `pid: Target`: the container whose pid namespace to join.
    pub pid_target: String,
}

/// What a container was asked to be.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique within the namespace.
    pub name: String,
    pub sandbox_id: String,
    /// The image as the client named it.
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub mounts: Vec<MountSpec>,
    pub devices: Vec<DeviceSpec>,
    pub resources: Resources,
    pub security: SecuritySettings,
    /// Absolute path of the CRI log file (empty: no log).
    pub log_path: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub labels: Labels,
    pub annotations: Labels,
    pub front: serde_json::Value,
    /// What only the Docker door asks for (tmpfs mounts, rlimits, an init).
    #[serde(default)]
    pub extras: ContainerExtras,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub namespace: String,
    pub spec: ContainerSpec,
    /// The image's id (config digest) and the reference it was resolved through.
    pub image_id: String,
    pub image_ref: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub pid: u32,
    /// The shim serving this container, once started.
    pub shim_address: String,
    pub bundle: String,
    /// The container's writable snapshot.
    pub snapshot_key: String,
    pub complete: bool,
    /// The effective identity of the container's process (set at create).
    #[serde(default)]
    pub identity: Option<ProcessIdentity>,
}

impl ContainerRecord {
    pub fn is_live(&self) -> bool {
        matches!(self.state, ContainerState::Running)
    }
}

pub fn record_key(namespace: &str, id: &str) -> String {
    format!("{namespace}/{id}")
}

pub fn name_key(namespace: &str, kind: &str, name: &str) -> String {
    format!("{namespace}/{kind}/{name}")
}

/// The container's log file: `relative` inside the pod's log `directory`. It must be a
/// relative path of plain names (no `..`, no absolute path), so that it cannot name a
/// file outside the directory; the shim opens it beneath the directory as well.
pub fn log_file(directory: &str, relative: &str) -> Result<String, super::CoreError> {
    let path = std::path::Path::new(relative);
    let plain = path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || relative.ends_with('/') || relative.contains('\0') {
        return Err(super::CoreError::InvalidArgument(format!(
            "log path {relative:?} must be a relative path inside the pod's log directory"
        )));
    }
    Ok(std::path::Path::new(directory).join(path).display().to_string())
}
