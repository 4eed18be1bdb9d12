//! Builds the OCI runtime spec (`config.json`) of a container from what the front door
//! asked for, its pod and its image, with the defaults Docker and containerd apply
//! (capabilities, mounts, masked paths, seccomp).
pub mod apparmor;
pub mod defaults;
pub mod host_devices;
pub mod layers;
pub mod seccomp;
pub mod user;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::core::{ContainerSpec, NamespaceMode, SandboxRecord, SupplementalGroupsPolicy};
use defaults::*;

/// The annotations the shim reads.
pub const SANDBOX_ID_ANNOTATION: &str = crate::task::SANDBOX_ANNOTATION;
pub const LOG_PATH_ANNOTATION: &str = "io.berth.cri.log-path";
/// The pod's log directory, beneath which the shim opens the log file.
pub const LOG_DIRECTORY_ANNOTATION: &str = "io.berth.cri.log-directory";
/// The size at which the shim rotates a log itself (berth's private attach log).
pub const LOG_ROTATE_BYTES_ANNOTATION: &str = "io.berth.log-rotate-bytes";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    User(#[from] user::UserError),
    #[error("{0}")]
    Seccomp(#[from] seccomp::SeccompProfileError),
    #[error("device {path}: {message}")]
    Device { path: String, message: String },
    #[error("the container has no command: neither the request nor the image gives one")]
    NoCommand,
    #[error("the generated spec is not valid: {0}")]
    Invalid(String),
}

/// What the image contributes.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    /// The image's layer directories, top first (to read /etc/passwd).
    pub layers: Vec<PathBuf>,
}

pub struct SpecInputs<'a> {
    pub container_id: &'a str,
    pub container: &'a ContainerSpec,
    pub sandbox: &'a SandboxRecord,
    pub image: &'a ImageDefaults,
    pub cgroups_path: String,
    /// Files bind-mounted into the container: (destination, host source).
    pub etc_files: Vec<(String, String)>,
    /// For a pid namespace shared with another container: its /proc/<pid>/ns/pid.
    pub pid_namespace_path: Option<String>,
}

/// The command line, by the CRI's rules: `command` replaces the entrypoint and `args`
/// the image's cmd; a command without args drops the image's cmd.
pub fn command_line(container: &ContainerSpec, image: &ImageDefaults) -> Result<Vec<String>, SpecError> {
    let mut line = match container.command.is_empty() {
        true => image.entrypoint.clone(),
        false => container.command.clone(),
    };
    match (container.args.is_empty(), container.command.is_empty()) {
        (false, _) => line.extend(container.args.iter().cloned()),
        (true, true) => line.extend(image.cmd.iter().cloned()),
        (true, false) => {}
    }
    match line.is_empty() {
        true => Err(SpecError::NoCommand),
        false => Ok(line),
    }
}

/// The environment: the image's, then the request's (which wins), PATH by default.
pub fn environment(container: &ContainerSpec, image: &ImageDefaults) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    };
    set("PATH", DEFAULT_PATH);
    for entry in &image.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(key, value);
    }
    for (key, value) in &container.env {
        set(key, value);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn capabilities(container: &ContainerSpec) -> Vec<String> {
    let security = &container.security;
    if security.privileged {
        return all_capabilities();
    }
    let normalize = |cap: &String| match cap.to_ascii_uppercase() {
        upper if upper.starts_with("CAP_") => upper,
        upper => format!("CAP_{upper}"),
    };
    let drop: Vec<String> = security.drop_capabilities.iter().map(normalize).collect();
    let add: Vec<String> = security.add_capabilities.iter().map(normalize).collect();
    // As containerd and dockerd: ALL first (add ALL, then drop ALL), then the single
    // capabilities added, then those dropped. So "drop ALL, add NET_BIND_SERVICE"
    // (Kubernetes' restricted pattern) keeps NET_BIND_SERVICE.
    let mut kept: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if add.iter().any(|c| c == "CAP_ALL") {
        kept = all_capabilities();
    }
    if drop.iter().any(|c| c == "CAP_ALL") {
        kept.clear();
    }
    kept.extend(add.into_iter().filter(|c| c != "CAP_ALL"));
    kept.retain(|c| !drop.contains(c));
    kept.sort();
    kept.dedup();
    kept
}

fn user_section(inputs: &SpecInputs) -> Result<Value, SpecError> {
    let security = &inputs.container.security;
    let name = match (&security.run_as_user, security.run_as_username.as_str()) {
        (Some(uid), _) => uid.to_string(),
        (None, name) if !name.is_empty() => name.to_string(),
        (None, _) => inputs.image.user.clone(),
    };
    let mut resolved = user::resolve(&inputs.image.layers, &name)?;
    if let Some(gid) = security.run_as_group {
        resolved.gid = gid as u32;
    }
    let mut additional = match security.supplemental_groups_policy {
        SupplementalGroupsPolicy::Merge => resolved.additional_gids.clone(),
        SupplementalGroupsPolicy::Strict => Vec::new(),
    };
    additional.extend(security.supplemental_groups.iter().map(|g| *g as u32));
    additional.extend(user::group_ids(&inputs.image.layers, &security.supplemental_group_names)?);
    additional.sort_unstable();
    additional.dedup();
    Ok(json!({ "uid": resolved.uid, "gid": resolved.gid, "additionalGids": additional }))
}

fn process_section(inputs: &SpecInputs, caps: &[String]) -> Result<Value, SpecError> {
    let container = inputs.container;
    let cwd = [container.working_dir.as_str(), inputs.image.working_dir.as_str()]
        .into_iter()
        .find(|dir| !dir.is_empty())
        .unwrap_or("/");
    let mut args = command_line(container, inputs.image)?;
    if container.extras.init_binary.is_some() {
        args.splice(0..0, [INIT_DESTINATION.to_string(), "--".to_string()]);
    }
    let mut process = json!({
        "terminal": container.tty,
        "args": args,
        "env": environment(container, inputs.image),
        "cwd": cwd,
        "user": user_section(inputs)?,
        "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
        "noNewPrivileges": container.security.no_new_privs,
    });
    if container.resources.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(container.resources.oom_score_adj);
    }
    if !container.security.apparmor.is_empty() && apparmor::enabled() {
        process["apparmorProfile"] = json!(container.security.apparmor);
    }
    if !container.extras.rlimits.is_empty() {
        let limits: Vec<Value> = container.extras.rlimits.iter().map(|l| json!({ "type": l.kind, "soft": l.soft, "hard": l.hard })).collect();
        process["rlimits"] = json!(limits);
    }
    Ok(process)
}

fn namespace(kind: &str, path: Option<&str>) -> Value {
    match path {
        Some(path) => json!({ "type": kind, "path": path }),
        None => json!({ "type": kind }),
    }
}

fn namespaces_section(inputs: &SpecInputs) -> Vec<Value> {
    let sandbox = inputs.sandbox;
    let mut list = vec![namespace("mount", None), namespace("cgroup", None)];
    match (inputs.container.security.pid, inputs.pid_namespace_path.as_deref()) {
        (NamespaceMode::Node, _) => {}
        (_, Some(path)) => list.push(namespace("pid", Some(path))),
        _ => list.push(namespace("pid", None)),
    }
    for (kind, pinned) in [("user", &sandbox.userns), ("network", &sandbox.netns), ("ipc", &sandbox.ipcns), ("uts", &sandbox.utsns)] {
        if let Some(path) = pinned {
            list.push(namespace(kind, Some(path)));
        }
    }
    list
}

pub fn resources_section(container: &ContainerSpec) -> Value {
    let r = &container.resources;
    let mut cpu = json!({});
    let set_positive = |obj: &mut Value, key: &str, value: i64| {
        if value > 0 {
            obj[key] = json!(value);
        }
    };
    set_positive(&mut cpu, "shares", r.cpu_shares);
    set_positive(&mut cpu, "quota", r.cpu_quota);
    set_positive(&mut cpu, "period", r.cpu_period);
    for (key, value) in [("cpus", &r.cpuset_cpus), ("mems", &r.cpuset_mems)] {
        if !value.is_empty() {
            cpu[key] = json!(value);
        }
    }
    let mut memory = json!({});
    set_positive(&mut memory, "limit", r.memory_limit_bytes);
    set_positive(&mut memory, "swap", r.memory_swap_limit_bytes);
    let mut resources = json!({ "cpu": cpu, "memory": memory });
    if container.security.privileged {
        resources["devices"] = json!([{ "allow": true, "access": "rwm" }]);
    }
    if !r.hugepage_limits.is_empty() {
        let limits: Vec<Value> = r.hugepage_limits.iter().map(|(size, limit)| json!({ "pageSize": size, "limit": limit })).collect();
        resources["hugepageLimits"] = json!(limits);
    }
    if r.pids_limit != 0 {
        resources["pids"] = json!({ "limit": r.pids_limit });
    }
    if !r.unified.is_empty() {
        resources["unified"] = json!(r.unified);
    }
    resources
}

fn device_entry(device: &crate::core::DeviceSpec) -> Result<(Value, Value), SpecError> {
    let error = |message: String| SpecError::Device { path: device.host_path.clone(), message };
    let meta = std::fs::metadata(&device.host_path).map_err(|e| error(e.to_string()))?;
    let kind = match meta.file_type() {
        t if t.is_char_device() => "c",
        t if t.is_block_device() => "b",
        _ => return Err(error("not a device node".into())),
    };
    let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    let access = if device.permissions.is_empty() { "rwm" } else { device.permissions.as_str() };
    let node = json!({
        "path": device.container_path, "type": kind, "major": major, "minor": minor,
        "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
    });
    let rule = json!({ "allow": true, "type": kind, "major": major, "minor": minor, "access": access });
    Ok((node, rule))
}

fn mounts_section(inputs: &SpecInputs) -> Vec<Value> {
    let container = inputs.container;
    let user_destinations: Vec<&str> = container.mounts.iter().map(|m| m.container_path.as_str()).collect();
    let mut mounts: Vec<Value> = standard_mounts(container.security.privileged);
    match &inputs.sandbox.shm {
        Some(shm) => mounts.push(bind_mount("/dev/shm", shm, &[])),
        None => mounts.push(private_shm_mount()),
    }
    for (destination, source) in &inputs.etc_files {
        if !user_destinations.contains(&destination.as_str()) {
            let mode = if container.security.readonly_rootfs { "ro" } else { "rw" };
            mounts.push(bind_mount(destination, source, &[mode]));
        }
    }
    for mount in &container.mounts {
        let mut options = vec![if mount.readonly { "ro" } else { "rw" }];
        if mount.recursive_read_only {
            options.push("rro");
        }
        let propagation = if mount.propagation.is_empty() { "rprivate" } else { mount.propagation.as_str() };
        options.push(propagation);
        mounts.push(bind_mount(&mount.container_path, &mount.host_path, &options));
    }
    for tmpfs in &container.extras.tmpfs {
        let mut options: Vec<String> = ["nosuid", "nodev", "noexec"].iter().map(|o| o.to_string()).collect();
        options.extend(tmpfs.options.iter().cloned());
        mounts.push(json!({ "destination": tmpfs.container_path, "type": "tmpfs", "source": "tmpfs", "options": options }));
    }
    if let Some(init) = &container.extras.init_binary {
        mounts.push(bind_mount(INIT_DESTINATION, init, &["ro", "rprivate"]));
    }
    mounts
}

/// Where a container's init (`docker run --init`) is mounted.
pub const INIT_DESTINATION: &str = "/sbin/docker-init";

/// A bidirectional mount needs the container's root mounts shared with the host's, a
/// host-to-container one at least slaves of them (as containerd sets it).
fn rootfs_propagation(container: &ContainerSpec) -> Option<&'static str> {
    let wanted = |kind: &str| container.mounts.iter().any(|m| m.propagation == kind);
    match (wanted("rshared"), wanted("rslave")) {
        (true, _) => Some("rshared"),
        (false, true) => Some("rslave"),
        _ => None,
    }
}

/// The whole spec, checked by parsing it as the runtime will.
pub fn build(inputs: &SpecInputs) -> Result<Value, SpecError> {
    let container = inputs.container;
    let caps = capabilities(container);
    let mut devices = match container.security.privileged {
        true => host_devices::host_devices(Path::new("/dev")),
        false => Vec::new(),
    };
    let mut resources = resources_section(container);
    let mut rules = vec![json!({ "allow": false, "access": "rwm" })];
    for device in &container.devices {
        let (node, rule) = device_entry(device)?;
        devices.retain(|host: &Value| host["path"] != node["path"]);
        devices.push(node);
        rules.push(rule);
    }
    if resources.get("devices").is_none() {
        resources["devices"] = json!(rules);
    }
    let privileged = container.security.privileged;
    let mut linux = json!({
        "namespaces": namespaces_section(inputs),
        "cgroupsPath": inputs.cgroups_path,
        "resources": resources,
        "devices": devices,
        "sysctl": inputs.sandbox.spec.sysctls,
        "maskedPaths": if privileged { vec![] } else { container.security.masked_paths.clone().unwrap_or_else(|| DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()) },
        "readonlyPaths": if privileged { vec![] } else { container.security.readonly_paths.clone().unwrap_or_else(|| DEFAULT_READONLY_PATHS.iter().map(|s| s.to_string()).collect()) },
    });
    if let Some(propagation) = rootfs_propagation(container) {
        linux["rootfsPropagation"] = json!(propagation);
    }
    if let Some(seccomp) = seccomp::seccomp_for(&container.security.seccomp, &caps)?.filter(|_| !privileged) {
        linux["seccomp"] = seccomp;
    }
    let mut annotations = container.annotations.clone();
    annotations.insert(SANDBOX_ID_ANNOTATION.into(), inputs.sandbox.id.clone());
    if !container.log_path.is_empty() {
        annotations.insert(LOG_PATH_ANNOTATION.into(), container.log_path.clone());
        let directory = match inputs.sandbox.spec.log_directory.as_str() {
            "" => std::path::Path::new(&container.log_path).parent().map(|p| p.display().to_string()).unwrap_or_default(),
            directory => directory.to_string(),
        };
        annotations.insert(LOG_DIRECTORY_ANNOTATION.into(), directory);
    }
    let spec = json!({
        "ociVersion": "1.2.0",
        "process": process_section(inputs, &caps)?,
        "root": { "path": "rootfs", "readonly": container.security.readonly_rootfs },
        "mounts": mounts_section(inputs),
        "linux": linux,
        "annotations": annotations,
    });
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone()).map_err(|e| SpecError::Invalid(e.to_string()))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn command_follows_the_cri_rules() {
        let image = ImageDefaults { entrypoint: vec!["/ep".into()], cmd: vec!["c1".into()], ..Default::default() };
        assert_eq!(command_line(&container(&[], &[]), &image).expect("image"), ["/ep", "c1"]);
        assert_eq!(command_line(&container(&["/x"], &[]), &image).expect("cmd"), ["/x"]);
        assert_eq!(command_line(&container(&[], &["a"]), &image).expect("args"), ["/ep", "a"]);
        assert_eq!(command_line(&container(&["/x"], &["a"]), &image).expect("both"), ["/x", "a"]);
        assert!(command_line(&container(&[], &[]), &ImageDefaults::default()).is_err());
    }

    #[test]
    fn environment_layers_and_overrides() {
        let image = ImageDefaults { env: vec!["PATH=/img".into(), "A=1".into()], ..Default::default() };
        let mut spec = container(&[], &[]);
        spec.env = vec![("A".into(), "2".into()), ("B".into(), "3".into())];
        assert_eq!(environment(&spec, &image), ["PATH=/img", "A=2", "B=3"]);
    }

    #[test]
    fn capabilities_add_drop_and_all() {
        let mut spec = container(&[], &[]);
        spec.security.add_capabilities = vec!["SYS_ADMIN".into()];
        spec.security.drop_capabilities = vec!["CAP_CHOWN".into()];
        let caps = capabilities(&spec);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        spec.security.drop_capabilities = vec!["ALL".into()];
        assert_eq!(capabilities(&spec), ["CAP_SYS_ADMIN"], "drop ALL keeps what is added");
        spec.security.add_capabilities = vec![];
        assert!(capabilities(&spec).is_empty());
        spec.security.add_capabilities = vec!["ALL".into()];
        spec.security.drop_capabilities = vec!["chown".into()];
        let caps = capabilities(&spec);
        assert_eq!(caps.len(), all_capabilities().len() - 1);
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
    }
}
