//! What this runtime supports (`features`, in the runtime-spec features schema) and
//! the default configuration it writes (`spec`).

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use serde_json::{json, Value};

pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// Recursive attributes (mount_setattr with AT_RECURSIVE) and idmapped bind mounts
/// are in `RECURSIVE_AND_IDMAP`.
const MOUNT_OPTIONS: &[&str] = &[
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
    "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private",
    "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
    "shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup",
    "unbindable",
];

const RECURSIVE_AND_IDMAP: &[&str] = &[
    "idmap", "rdev", "rdiratime", "rexec", "ridmap", "rnoatime", "rnodev", "rnodiratime",
    "rnoexec", "rnosuid", "rnosymfollow", "rro", "rrw", "rstrictatime", "rsuid", "rsymfollow",
];

fn mount_options() -> Vec<&'static str> {
    let mut all: Vec<&str> = MOUNT_OPTIONS.iter().chain(RECURSIVE_AND_IDMAP).copied().collect();
    all.sort_unstable();
    all
}

pub fn features() -> Value {
    let capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let mut capabilities = capabilities;
    capabilities.sort();
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": crate::seccomp::supported_features(),
            "apparmor": {"enabled": true},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}},
        },
        "annotations": {"io.github.berth.runtime.version": env!("CARGO_PKG_VERSION")},
    })
}

/// The config.json `spec` writes: a busybox-friendly default like runc's.
pub fn default_spec(rootless: bool) -> Result<Spec, serde_json::Error> {
    let mut spec = Spec::default();
    spec.set_hostname(Some("berth".into()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
        process.set_args(Some(vec!["sh".into()]));
    }
    if rootless {
        make_rootless(&mut spec)?;
    }
    Ok(spec)
}

/// A new user namespace mapping root to the caller, and no network namespace or
/// resources (which an unprivileged user could not set up).
fn make_rootless(spec: &mut Spec) -> Result<(), serde_json::Error> {
    let Some(linux) = spec.linux_mut() else { return Ok(()) };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    namespaces.push(serde_json::from_value(json!({"type": "user"}))?);
    linux.set_namespaces(Some(namespaces));
    let map = |host: u32| -> Result<Vec<LinuxIdMapping>, serde_json::Error> {
        serde_json::from_value(json!([{"containerID": 0, "hostID": host, "size": 1}]))
    };
    linux.set_uid_mappings(Some(map(nix::unistd::getuid().as_raw())?));
    linux.set_gid_mappings(Some(map(nix::unistd::getgid().as_raw())?));
    linux.set_resources(None);
    Ok(())
}
