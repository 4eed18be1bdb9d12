//! Translations between CRI messages and the core's specs and records.
use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::core::{self, ContainerRecord, ContainerSpec, NamespaceMode, SandboxRecord, SandboxSpec};

fn labels(map: &HashMap<String, String>) -> core::Labels {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn hash_map(map: &core::Labels) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn namespace_mode(value: i32) -> NamespaceMode {
    match cri::NamespaceMode::try_from(value).unwrap_or(cri::NamespaceMode::Pod) {
        cri::NamespaceMode::Pod => NamespaceMode::Pod,
        cri::NamespaceMode::Container => NamespaceMode::Container,
        cri::NamespaceMode::Node => NamespaceMode::Node,
        cri::NamespaceMode::Target => NamespaceMode::Target,
    }
}

fn protocol(value: i32) -> Result<&'static str, String> {
    match cri::Protocol::try_from(value) {
        Ok(cri::Protocol::Tcp) => Ok("tcp"),
        Ok(cri::Protocol::Udp) => Ok("udp"),
        Ok(cri::Protocol::Sctp) => Ok("sctp"),
        Err(_) => Err(format!("port mapping protocol {value} is not TCP, UDP or SCTP")),
    }
}

fn port_number(value: i32, what: &str) -> Result<u16, String> {
    u16::try_from(value).ok().filter(|port| *port > 0).ok_or_else(|| format!("{what} {value} is not a port (1 to 65535)"))
}

/// A CRI port mapping, checked: ports in range, a known protocol, a host IP that parses.
fn port_mapping(mapping: &cri::PortMapping) -> Result<core::PortMapping, String> {
    if !mapping.host_ip.is_empty() && mapping.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("port mapping host IP {:?} is not an IP address", mapping.host_ip));
    }
    Ok(core::PortMapping {
        protocol: protocol(mapping.protocol)?.into(),
        container_port: port_number(mapping.container_port, "container port")?,
        host_port: port_number(mapping.host_port, "host port")?,
        host_ip: mapping.host_ip.clone(),
    })
}

/// The unique name the CRI gives a pod: name, namespace, uid and attempt.
pub fn sandbox_name(metadata: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", metadata.name, metadata.namespace, metadata.uid, metadata.attempt)
}

/// The kernel's limit on a hostname (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;

/// The pod's hostname: the one asked for, or the node's when none is (as containerd does).
fn pod_hostname(requested: &str) -> Result<String, String> {
    if requested.is_empty() {
        let node = nix::unistd::gethostname().map_err(|e| format!("reading the node's hostname: {e}"))?;
        return Ok(node.to_string_lossy().into_owned());
    }
    if requested.len() > HOSTNAME_MAX {
        return Err(format!("hostname {requested:?} is {} bytes long, over the limit of {HOSTNAME_MAX}", requested.len()));
    }
    if requested.contains('\0') {
        return Err(format!("hostname {requested:?} contains a NUL byte"));
    }
    Ok(requested.to_string())
}

/// The pod's user namespace: the node's, or one of its own with exactly one uid and one
/// gid range that maps the container's root (as the kubelet sends them).
fn user_namespace(options: Option<&cri::UserNamespace>) -> Result<Option<core::UserNamespaceSpec>, String> {
    let Some(options) = options else { return Ok(None) };
    match cri::NamespaceMode::try_from(options.mode) {
        Ok(cri::NamespaceMode::Node) => Ok(None),
        Ok(cri::NamespaceMode::Pod) => Ok(Some(core::UserNamespaceSpec { uids: id_maps("uid", &options.uids)?, gids: id_maps("gid", &options.gids)? })),
        Ok(mode) => Err(format!("user namespace mode {} is not supported: only POD and NODE are", mode.as_str_name())),
        Err(_) => Err(format!("unknown user namespace mode {}", options.mode)),
    }
}

fn id_maps(kind: &str, maps: &[cri::IdMapping]) -> Result<Vec<core::IdMap>, String> {
    let [map] = maps else {
        return Err(format!("a pod's user namespace takes exactly one {kind} mapping, not {}", maps.len()));
    };
    if map.container_id != 0 {
        return Err(format!("the {kind} mapping must start at container id 0 (it starts at {})", map.container_id));
    }
    if map.length == 0 || map.host_id.checked_add(map.length).is_none() {
        return Err(format!("the {kind} mapping {}:{}:{} is empty or out of range", map.container_id, map.host_id, map.length));
    }
    Ok(vec![core::IdMap { container_id: map.container_id, host_id: map.host_id, length: map.length }])
}

pub fn sandbox_spec(config: &cri::PodSandboxConfig, handler: &str) -> Result<SandboxSpec, String> {
    let metadata = config.metadata.as_ref().ok_or("the sandbox config has no metadata")?;
    if metadata.name.is_empty() {
        return Err("the sandbox metadata has no name".into());
    }
    let linux = config.linux.clone().unwrap_or_default();
    let security = linux.security_context.clone().unwrap_or_default();
    let namespaces = security.namespace_options.clone().unwrap_or_default();
    // A mapping without a host port only documents the container's port (the kubelet
    // sends one per containerPort): nothing is forwarded for it.
    let port_mappings = config.port_mappings.iter().filter(|p| p.host_port != 0).map(port_mapping).collect::<Result<_, _>>()?;
    Ok(SandboxSpec {
        name: sandbox_name(metadata),
        hostname: pod_hostname(&config.hostname)?,
        labels: labels(&config.labels),
        annotations: labels(&config.annotations),
        log_directory: config.log_directory.clone(),
        dns: config.dns_config.as_ref().map(|d| core::DnsSettings { servers: d.servers.clone(), searches: d.searches.clone(), options: d.options.clone(), extra_hosts: Vec::new() }),
        port_mappings,
        cgroup_parent: linux.cgroup_parent.clone(),
        network: namespace_mode(namespaces.network),
        networks: None,
        network_of: None,
        links: Vec::new(),
        ipc: namespace_mode(namespaces.ipc),
        shm_bytes: None,
        pid: namespace_mode(namespaces.pid),
        sysctls: labels(&linux.sysctls),
        user_namespace: user_namespace(namespaces.userns_options.as_ref())?,
        runtime_handler: handler.to_string(),
        privileged: security.privileged,
        front: serde_json::to_value(metadata).unwrap_or_default(),
    })
}

fn sandbox_metadata(record: &SandboxRecord) -> cri::PodSandboxMetadata {
    serde_json::from_value(record.spec.front.clone()).unwrap_or_default()
}

fn sandbox_state(record: &SandboxRecord) -> i32 {
    match record.state {
        core::SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        core::SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

pub fn pod_sandbox(record: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: record.id.clone(),
        metadata: Some(sandbox_metadata(record)),
        state: sandbox_state(record),
        created_at: record.created_at,
        labels: hash_map(&record.spec.labels),
        annotations: hash_map(&record.spec.annotations),
        runtime_handler: record.spec.runtime_handler.clone(),
    }
}

fn cri_mode(mode: NamespaceMode) -> i32 {
    (match mode {
        NamespaceMode::Pod => cri::NamespaceMode::Pod,
        NamespaceMode::Container => cri::NamespaceMode::Container,
        NamespaceMode::Node => cri::NamespaceMode::Node,
        NamespaceMode::Target => cri::NamespaceMode::Target,
    }) as i32
}

pub fn pod_sandbox_status(record: &SandboxRecord) -> cri::PodSandboxStatus {
    let network = record.ips.first().map(|ip| cri::PodSandboxNetworkStatus {
        ip: ip.clone(),
        additional_ips: record.ips.iter().skip(1).map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
    });
    let options = cri::NamespaceOption {
        network: cri_mode(record.spec.network),
        pid: cri_mode(record.spec.pid),
        ipc: cri_mode(record.spec.ipc),
        ..Default::default()
    };
    cri::PodSandboxStatus {
        id: record.id.clone(),
        metadata: Some(sandbox_metadata(record)),
        state: sandbox_state(record),
        created_at: record.created_at,
        network: Some(network.unwrap_or_default()),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options: Some(options) }),
        }),
        labels: hash_map(&record.spec.labels),
        annotations: hash_map(&record.spec.annotations),
        runtime_handler: record.spec.runtime_handler.clone(),
    }
}

fn seccomp(profile: Option<&cri::SecurityProfile>, legacy_path: &str) -> core::SeccompProfile {
    match profile {
        Some(p) => match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => core::SeccompProfile::RuntimeDefault,
            Ok(cri::security_profile::ProfileType::Localhost) => core::SeccompProfile::Localhost(p.localhost_ref.clone()),
            _ => core::SeccompProfile::Unconfined,
        },
        None => match legacy_path {
            "runtime/default" | "docker/default" => core::SeccompProfile::RuntimeDefault,
            path if path.starts_with("localhost/") => core::SeccompProfile::Localhost(path["localhost/".len()..].to_string()),
            _ => core::SeccompProfile::Unconfined,
        },
    }
}

/// A CRI mount as the core takes it; a recursive read-only mount must be read-only and
/// private (a propagated submount could not be kept read-only).
fn mount_spec(mount: &cri::Mount) -> Result<core::MountSpec, String> {
    let propagation = propagation(mount.propagation);
    if mount.recursive_read_only && !mount.readonly {
        return Err(format!("mount {}: recursive_read_only needs readonly", mount.container_path));
    }
    if mount.recursive_read_only && propagation != "rprivate" {
        return Err(format!("mount {}: recursive_read_only needs private propagation, not {propagation}", mount.container_path));
    }
    Ok(core::MountSpec {
        container_path: mount.container_path.clone(),
        host_path: mount.host_path.clone(),
        readonly: mount.readonly,
        propagation: propagation.into(),
        recursive_read_only: mount.recursive_read_only,
    })
}

fn propagation(value: i32) -> &'static str {
    match cri::MountPropagation::try_from(value).unwrap_or(cri::MountPropagation::PropagationPrivate) {
        cri::MountPropagation::PropagationPrivate => "rprivate",
        cri::MountPropagation::PropagationHostToContainer => "rslave",
        cri::MountPropagation::PropagationBidirectional => "rshared",
    }
}

pub fn resources(r: &cri::LinuxContainerResources) -> core::Resources {
    core::Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r.hugepage_limits.iter().map(|h| (h.page_size.clone(), h.limit)).collect(),
        unified: labels(&r.unified),
        pids_limit: 0,
    }
}

/// The AppArmor profile asked for: the structured field when set, else the deprecated
/// string (`localhost/NAME`, `runtime/default`, `unconfined`). Empty means none: the
/// runtime's default is unconfined.
#[allow(deprecated)] // apparmor_profile: older kubelets still send it
fn apparmor_profile(context: &cri::LinuxContainerSecurityContext) -> Result<String, String> {
    use cri::security_profile::ProfileType;
    if let Some(profile) = &context.apparmor {
        let name = profile.localhost_ref.strip_prefix("localhost/").unwrap_or(&profile.localhost_ref);
        return match ProfileType::try_from(profile.profile_type) {
            Ok(ProfileType::Localhost) if name.is_empty() => Err("apparmor: a Localhost profile needs localhost_ref".into()),
            Ok(ProfileType::Localhost) => Ok(name.to_string()),
            Ok(ProfileType::RuntimeDefault | ProfileType::Unconfined) => Ok(String::new()),
            Err(_) => Err(format!("apparmor: unknown profile type {}", profile.profile_type)),
        };
    }
    match context.apparmor_profile.as_str() {
        "" | "runtime/default" | "unconfined" => Ok(String::new()),
        other => match other.strip_prefix("localhost/") {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(format!("apparmor: unsupported profile {other:?} (runtime/default, unconfined or localhost/NAME)")),
        },
    }
}

#[allow(deprecated)] // seccomp_profile_path: older kubelets still send it
fn security(context: &cri::LinuxContainerSecurityContext) -> core::SecuritySettings {
    let caps = context.capabilities.clone().unwrap_or_default();
    let namespaces = context.namespace_options.clone().unwrap_or_default();
    core::SecuritySettings {
        privileged: context.privileged,
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        run_as_user: context.run_as_user.as_ref().map(|v| v.value),
        run_as_group: context.run_as_group.as_ref().map(|v| v.value),
        run_as_username: context.run_as_username.clone(),
        supplemental_group_names: Vec::new(),
        supplemental_groups: context.supplemental_groups.clone(),
        supplemental_groups_policy: match cri::SupplementalGroupsPolicy::try_from(context.supplemental_groups_policy) {
            Ok(cri::SupplementalGroupsPolicy::Strict) => core::SupplementalGroupsPolicy::Strict,
            _ => core::SupplementalGroupsPolicy::Merge,
        },
        readonly_rootfs: context.readonly_rootfs,
        no_new_privs: context.no_new_privs,
        seccomp: seccomp(context.seccomp.as_ref(), &context.seccomp_profile_path),
        apparmor: String::new(),
        // The kubelet sends both lists only when it means them (procMount: Default).
        masked_paths: (!context.masked_paths.is_empty()).then(|| context.masked_paths.clone()),
        readonly_paths: (!context.readonly_paths.is_empty()).then(|| context.readonly_paths.clone()),
        pid: namespace_mode(namespaces.pid),
        pid_target: namespaces.target_id,
    }
}

pub fn container_spec(config: &cri::ContainerConfig, sandbox: &SandboxRecord) -> Result<ContainerSpec, String> {
    let metadata = config.metadata.as_ref().ok_or("the container config has no metadata")?;
    if metadata.name.is_empty() {
        return Err("the container metadata has no name".into());
    }
    let image = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
    if image.is_empty() {
        return Err("the container config names no image".into());
    }
    let linux = config.linux.clone().unwrap_or_default();
    if let Some(context) = &linux.security_context {
        // The CRI takes run_as_group only beside a user (critest checks the refusal).
        if context.run_as_group.is_some() && context.run_as_user.is_none() && context.run_as_username.is_empty() {
            return Err("run_as_group needs run_as_user or run_as_username".into());
        }
    }
    let apparmor = linux.security_context.as_ref().map(apparmor_profile).transpose()?.unwrap_or_default();
    if !apparmor.is_empty() {
        crate::spec::apparmor::check_loaded(&apparmor)?;
    }
    let log_path = match (config.log_path.is_empty(), sandbox.spec.log_directory.is_empty()) {
        (false, false) => core::log_file(&sandbox.spec.log_directory, &config.log_path).map_err(|e| e.to_string())?,
        _ => String::new(),
    };
    Ok(ContainerSpec {
        name: format!("{}_{}_{}", metadata.name, sandbox.spec.name, metadata.attempt),
        sandbox_id: sandbox.id.clone(),
        image,
        command: config.command.clone(),
        args: config.args.clone(),
        env: config.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect(),
        working_dir: config.working_dir.clone(),
        mounts: config.mounts.iter().map(mount_spec).collect::<Result<_, _>>()?,
        devices: config
            .devices
            .iter()
            .map(|d| core::DeviceSpec { container_path: d.container_path.clone(), host_path: d.host_path.clone(), permissions: d.permissions.clone() })
            .collect(),
        resources: linux.resources.as_ref().map(resources).unwrap_or_default(),
        security: core::SecuritySettings { apparmor, ..linux.security_context.as_ref().map(security).unwrap_or_default() },
        log_path,
        tty: config.tty,
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        labels: labels(&config.labels),
        annotations: labels(&config.annotations),
        front: serde_json::to_value(metadata).unwrap_or_default(),
        extras: core::ContainerExtras::default(),
    })
}

fn container_metadata(record: &ContainerRecord) -> cri::ContainerMetadata {
    serde_json::from_value(record.spec.front.clone()).unwrap_or_default()
}

pub fn container_state(state: core::ContainerState) -> i32 {
    (match state {
        core::ContainerState::Created => cri::ContainerState::ContainerCreated,
        core::ContainerState::Running => cri::ContainerState::ContainerRunning,
        core::ContainerState::Exited => cri::ContainerState::ContainerExited,
        core::ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }) as i32
}

fn image_spec(record: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec { image: record.spec.image.clone(), user_specified_image: record.spec.image.clone(), ..Default::default() }
}

pub fn container(record: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: record.id.clone(),
        pod_sandbox_id: record.spec.sandbox_id.clone(),
        metadata: Some(container_metadata(record)),
        image: Some(image_spec(record)),
        image_ref: record.image_ref.clone(),
        state: container_state(record.state),
        created_at: record.created_at,
        labels: hash_map(&record.spec.labels),
        annotations: hash_map(&record.spec.annotations),
        image_id: record.image_id.clone(),
    }
}

fn cri_resources(r: &core::Resources) -> cri::ContainerResources {
    cri::ContainerResources {
        linux: Some(cri::LinuxContainerResources {
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpu_shares: r.cpu_shares,
            memory_limit_in_bytes: r.memory_limit_bytes,
            oom_score_adj: r.oom_score_adj,
            cpuset_cpus: r.cpuset_cpus.clone(),
            cpuset_mems: r.cpuset_mems.clone(),
            hugepage_limits: r.hugepage_limits.iter().map(|(size, limit)| cri::HugepageLimit { page_size: size.clone(), limit: *limit }).collect(),
            unified: hash_map(&r.unified),
            memory_swap_limit_in_bytes: r.memory_swap_limit_bytes,
        }),
        windows: None,
    }
}

fn cri_propagation(value: &str) -> i32 {
    (match value {
        "rslave" => cri::MountPropagation::PropagationHostToContainer,
        "rshared" => cri::MountPropagation::PropagationBidirectional,
        _ => cri::MountPropagation::PropagationPrivate,
    }) as i32
}

pub fn container_status(record: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: record.id.clone(),
        metadata: Some(container_metadata(record)),
        state: container_state(record.state),
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at: record.finished_at,
        exit_code: record.exit_code,
        image: Some(image_spec(record)),
        image_ref: record.image_ref.clone(),
        reason: record.reason.clone(),
        message: record.message.clone(),
        labels: hash_map(&record.spec.labels),
        annotations: hash_map(&record.spec.annotations),
        mounts: record
            .spec
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                recursive_read_only: m.recursive_read_only,
                propagation: cri_propagation(&m.propagation),
                ..Default::default()
            })
            .collect(),
        log_path: record.spec.log_path.clone(),
        resources: Some(cri_resources(&record.spec.resources)),
        image_id: record.image_id.clone(),
        user: record.identity.as_ref().map(container_user),
    }
}

/// The effective identity as the CRI reports it: the supplemental groups include the
/// primary group, as `id -G` lists it.
fn container_user(identity: &core::ProcessIdentity) -> cri::ContainerUser {
    let mut groups: Vec<i64> = std::iter::once(identity.gid).chain(identity.additional_gids.iter().copied()).map(i64::from).collect();
    groups.sort_unstable();
    groups.dedup();
    cri::ContainerUser { linux: Some(cri::LinuxContainerUser { uid: identity.uid.into(), gid: identity.gid.into(), supplemental_groups: groups }) }
}

pub fn u64_value(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

pub fn container_stats(record: &ContainerRecord, usage: &core::stats::Usage, image_fs_mountpoint: &str) -> cri::ContainerStats {
    let at = usage.timestamp_nanos;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: record.id.clone(),
            metadata: Some(container_metadata(record)),
            labels: hash_map(&record.spec.labels),
            annotations: hash_map(&record.spec.annotations),
        }),
        cpu: Some(cpu_usage(usage)),
        memory: Some(memory_usage(usage)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: at,
            fs_id: Some(cri::FilesystemIdentifier { mountpoint: image_fs_mountpoint.to_string() }),
            used_bytes: u64_value(usage.writable_bytes),
            inodes_used: u64_value(usage.writable_inodes),
        }),
        swap: None,
    }
}

pub fn cpu_usage(usage: &core::stats::Usage) -> cri::CpuUsage {
    cri::CpuUsage { timestamp: usage.timestamp_nanos, usage_core_nano_seconds: u64_value(usage.cpu_usage_nanos), usage_nano_cores: None }
}

pub fn memory_usage(usage: &core::stats::Usage) -> cri::MemoryUsage {
    let available = usage.memory_limit_bytes.checked_sub(usage.memory_working_set_bytes).filter(|_| usage.memory_limit_bytes < (1 << 62));
    cri::MemoryUsage {
        timestamp: usage.timestamp_nanos,
        working_set_bytes: u64_value(usage.memory_working_set_bytes),
        available_bytes: available.and_then(u64_value),
        usage_bytes: u64_value(usage.memory_usage_bytes),
        rss_bytes: u64_value(usage.memory_rss_bytes),
        page_faults: u64_value(usage.page_faults),
        major_page_faults: u64_value(usage.major_page_faults),
    }
}

/// Whether every `selector` label is present with its value.
pub fn labels_match(selector: &HashMap<String, String>, labels: &core::Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
