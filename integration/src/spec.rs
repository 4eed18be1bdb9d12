//! The default OCI runtime spec for tests, shaped like `runc spec` (with terminal
//! false), as a `serde_json::Value` each test can modify.

use serde_json::{json, Value};

const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// A default spec running `args`, with the given cgroupsPath.
pub fn default_spec(args: &[&str], cgroups_path: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS, "ambient": DEFAULT_CAPS
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "berth",
        "mounts": default_mounts(),
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

fn default_mounts() -> Value {
    json!([
        { "destination": "/proc", "type": "proc", "source": "proc" },
        { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
          "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
          "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
        { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
          "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
        { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
          "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/sys", "type": "sysfs", "source": "sysfs",
          "options": ["nosuid", "noexec", "nodev", "ro"] },
        { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
          "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
    ])
}

/// Appends a mount to `spec["mounts"]`.
pub fn add_mount(spec: &mut Value, mount: Value) {
    spec["mounts"]
        .as_array_mut()
        .expect("spec has mounts")
        .push(mount);
}

/// Adds a namespace entry (`path` optional) to `spec.linux.namespaces`, replacing an
/// entry of the same type.
pub fn set_namespace(spec: &mut Value, ns_type: &str, path: Option<&str>) {
    let list = spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("spec has namespaces");
    list.retain(|n| n["type"] != ns_type);
    let mut entry = json!({ "type": ns_type });
    if let Some(p) = path {
        entry["path"] = json!(p);
    }
    list.push(entry);
}

/// Removes the namespace of `ns_type` from `spec.linux.namespaces`.
pub fn remove_namespace(spec: &mut Value, ns_type: &str) {
    let list = spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("spec has namespaces");
    list.retain(|n| n["type"] != ns_type);
}

/// A new user namespace mapping container ids 0..65536 to host uids 100000.. and gids
/// 200000..; the `cgroup` mounts go, as a v1 cgroup cannot be mounted from inside it.
pub fn set_mapped_user_namespace(spec: &mut Value) {
    set_namespace(spec, "user", None);
    spec["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    spec["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }]);
    spec["mounts"].as_array_mut().expect("spec has mounts").retain(|m| m["type"] != "cgroup");
}

/// A seccomp profile allowing everything but `names`, which fail with EPERM.
pub fn set_seccomp_denying(spec: &mut Value, names: &[&str]) {
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{ "names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
    });
}
