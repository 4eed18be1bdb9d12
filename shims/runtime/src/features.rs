//! What this runtime supports (`features`, in the runtime-spec features schema) and
//! the default configuration it writes (`spec`).

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use serde_json::{json, Value};

pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.3.0";

const MOUNT_OPTIONS: &[&str] = &[
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
    "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private",
    "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
    "shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup",
    "unbindable",
];

pub fn features() -> Value {
    let capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let mut capabilities = capabilities;
    capabilities.sort();
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": crate::seccomp::supported_features(),
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
        },
        "annotations": {"io.github.berth.runtime.version": env!("CARGO_PKG_VERSION")},
    })
}

/// The config.json `spec` writes: a busybox-friendly default like runc's.
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("berth".into()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
        process.set_args(Some(vec!["sh".into()]));
    }
    if rootless {
        make_rootless(&mut spec);
    }
    spec
}

fn make_rootless(spec: &mut Spec) {
    let Some(linux) = spec.linux_mut() else { return };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    namespaces.push(oci_spec::runtime::LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::User).build().expect("a namespace with only a type builds"));
    linux.set_namespaces(Some(namespaces));
    let map = |host: u32| -> LinuxIdMapping {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32).host_id(host).size(1u32).build().expect("a complete mapping builds")
    };
    linux.set_uid_mappings(Some(vec![map(nix::unistd::getuid().as_raw())]));
    linux.set_gid_mappings(Some(vec![map(nix::unistd::getgid().as_raw())]));
    linux.set_resources(None);
}
