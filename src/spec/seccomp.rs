//! Seccomp profiles for the OCI spec: `RuntimeDefault` (every syscall allowed except
//! those Docker's default profile refuses to an unprivileged container, which get EPERM)
//! and `Localhost` profiles read from a JSON file in Docker's or the OCI's format.
use serde_json::{json, Value};

use crate::core::SeccompProfile;

/// Refused unless the container holds CAP_SYS_ADMIN (Docker gates these on it).
const NEED_SYS_ADMIN: &[&str] = &[
    "bpf", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
    "mount", "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open",
    "pivot_root", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "umount",
    "umount2", "unshare",
];

/// Refused to every unprivileged container.
const ALWAYS_REFUSED: &[&str] = &[
    "acct", "add_key", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "mbind", "move_pages", "nfsservctl",
    "open_by_handle_at", "process_vm_readv", "process_vm_writev", "ptrace", "query_module",
    "reboot", "request_key", "set_mempolicy", "settimeofday", "stime", "swapoff", "swapon",
    "sysfs", "_sysctl", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
];

const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];

#[derive(Debug, thiserror::Error)]
pub enum SeccompProfileError {
    #[error("seccomp profile {path}: {message}")]
    Unreadable { path: String, message: String },
}

/// The `linux.seccomp` object for `profile`, or `None` when unconfined.
pub fn seccomp_for(profile: &SeccompProfile, capabilities: &[String]) -> Result<Option<Value>, SeccompProfileError> {
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => Ok(Some(runtime_default(capabilities))),
        SeccompProfile::Localhost(path) => localhost(path).map(Some),
    }
}

fn runtime_default(capabilities: &[String]) -> Value {
    let has_sys_admin = capabilities.iter().any(|cap| cap == "CAP_SYS_ADMIN");
    let mut refused: Vec<&str> = ALWAYS_REFUSED.to_vec();
    if !has_sys_admin {
        refused.extend_from_slice(NEED_SYS_ADMIN);
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHITECTURES,
        "syscalls": [{ "names": refused, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM }],
    })
}

fn localhost(path: &str) -> Result<Value, SeccompProfileError> {
    let unreadable = |message: String| SeccompProfileError::Unreadable { path: path.to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|error| unreadable(error.to_string()))?;
    let profile: Value = serde_json::from_str(&text).map_err(|error| unreadable(error.to_string()))?;
    let default_action = profile
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or_else(|| unreadable("it has no defaultAction".into()))?;
    let mut oci = json!({ "defaultAction": default_action, "syscalls": [] });
    if let Some(errno) = profile.get("defaultErrnoRet") {
        oci["defaultErrnoRet"] = errno.clone();
    }
    oci["architectures"] = architectures_of(&profile);
    let rules = profile.get("syscalls").and_then(Value::as_array).cloned().unwrap_or_default();
    oci["syscalls"] = Value::Array(rules.iter().map(oci_rule).collect());
    Ok(oci)
}

/// Docker profiles list `archMap` entries; OCI ones list `architectures`.
fn architectures_of(profile: &Value) -> Value {
    if let Some(list) = profile.get("architectures") {
        return list.clone();
    }
    let from_map: Vec<Value> = profile
        .get("archMap")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("architecture").cloned())
        .collect();
    Value::Array(from_map)
}

fn oci_rule(rule: &Value) -> Value {
    let mut names = rule.get("names").cloned().unwrap_or_else(|| json!([]));
    if let Some(name) = rule.get("name") {
        names = json!([name]);
    }
    let mut oci = json!({ "names": names, "action": rule.get("action").cloned().unwrap_or(json!("SCMP_ACT_ALLOW")) });
    for key in ["errnoRet", "args"] {
        if let Some(value) = rule.get(key).filter(|value| !value.is_null()) {
            oci[key] = value.clone();
        }
    }
    oci
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_default_refuses_mount_unless_sys_admin() {
        let plain = runtime_default(&[]);
        let names = plain["syscalls"][0]["names"].as_array().expect("names");
        assert!(names.iter().any(|name| name == "mount"));
        assert!(names.iter().any(|name| name == "ptrace"));
        let admin = runtime_default(&["CAP_SYS_ADMIN".into()]);
        let names = admin["syscalls"][0]["names"].as_array().expect("names");
        assert!(!names.iter().any(|name| name == "mount"));
    }

    #[test]
    fn docker_profiles_convert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        let docker = r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":[]}],
            "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":[],"comment":"x"}]}"#;
        std::fs::write(&path, docker).expect("write");
        let oci = localhost(path.to_str().expect("utf-8")).expect("convert");
        assert_eq!(oci["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(oci["syscalls"][0]["names"], json!(["read", "write"]));
        assert!(oci["syscalls"][0].get("comment").is_none());
        assert!(localhost("/nonexistent/profile.json").is_err());
    }
}
