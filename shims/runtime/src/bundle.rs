//! Loading a bundle: reads `config.json`, accepts every runtime-spec 1.x version, and
//! rejects configurations that are invalid or contradict themselves before anything is
//! created, naming the field at fault.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("bundle {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: invalid config.json: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("config.json: {field}: {problem}")]
    Invalid { field: &'static str, problem: String },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> BundleError {
    BundleError::Invalid { field, problem: problem.into() }
}

/// A parsed, validated bundle.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

impl Bundle {
    /// Reads and validates `<dir>/config.json`. `dir` is made absolute.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let dir = std::path::absolute(dir).map_err(|e| BundleError::Io(dir.into(), e))?;
        let config = dir.join("config.json");
        let text = std::fs::read(&config).map_err(|e| BundleError::Io(config.clone(), e))?;
        let spec: Spec = serde_json::from_slice(&text).map_err(|e| BundleError::Parse(config, e))?;
        let rootfs = resolve_rootfs(&dir, &spec)?;
        validate(&spec)?;
        Ok(Bundle { dir, rootfs, spec })
    }
}

fn resolve_rootfs(dir: &Path, spec: &Spec) -> Result<PathBuf, BundleError> {
    let root = spec.root().as_ref().ok_or_else(|| invalid("root", "missing"))?;
    let path = dir.join(root.path());
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(invalid("root.path", format!("{} is not a directory", path.display()))),
        Err(e) => Err(invalid("root.path", format!("{}: {e}", path.display()))),
    }
}

/// Checks everything that can be checked without touching the system.
pub fn validate(spec: &Spec) -> Result<(), BundleError> {
    validate_version(spec.version())?;
    let process = spec.process().as_ref().ok_or_else(|| invalid("process", "missing"))?;
    validate_process(process)?;
    validate_namespaces(spec)
}

/// Checks a process (the container's, or one given to `exec`).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<(), BundleError> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args", "must name the program to run"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd", format!("{:?} is not absolute", process.cwd())));
    }
    Ok(())
}

fn validate_version(version: &str) -> Result<(), BundleError> {
    let major = version.split('.').next().unwrap_or_default();
    if major != "1" || version.split('.').count() < 2 {
        return Err(invalid("ociVersion", format!("{version:?} is not a runtime-spec 1.x version")));
    }
    Ok(())
}

fn validate_namespaces(spec: &Spec) -> Result<(), BundleError> {
    let linux = spec.linux().as_ref().ok_or_else(|| invalid("linux", "missing"))?;
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    let mut seen = HashSet::new();
    for ns in namespaces {
        if !seen.insert(ns.typ()) {
            return Err(invalid("linux.namespaces", format!("{} listed twice", ns.typ())));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(invalid("linux.namespaces", "the time namespace is not supported"));
        }
    }
    let private = |typ| namespaces.iter().any(|ns| ns.typ() == typ && ns.path().is_none());
    let has = |typ| seen.contains(&typ);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if private(LinuxNamespaceType::User) && !maps {
        return Err(invalid("linux.uidMappings", "a new user namespace needs uid and gid mappings"));
    }
    if maps && !private(LinuxNamespaceType::User) {
        return Err(invalid("linux.uidMappings", "mappings are set but no new user namespace is"));
    }
    // A uts namespace joined by path gets the names too, as runc and crun do.
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(invalid("hostname", "setting it needs a uts namespace"));
    }
    if spec.domainname().as_ref().is_some_and(|d| !d.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(invalid("domainname", "setting it needs a uts namespace"));
    }
    validate_sysctls(linux, &has)
}

fn validate_sysctls(
    linux: &oci_spec::runtime::Linux,
    has: &dyn Fn(LinuxNamespaceType) -> bool,
) -> Result<(), BundleError> {
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        let needed = if key.starts_with("net.") {
            Some(LinuxNamespaceType::Network)
        } else if key.starts_with("kernel.shm") || key.starts_with("kernel.msg")
            || key == "kernel.sem" || key.starts_with("fs.mqueue.")
        {
            Some(LinuxNamespaceType::Ipc)
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            Some(LinuxNamespaceType::Uts)
        } else {
            None
        };
        match needed {
            Some(typ) if !has(typ) => {
                return Err(invalid("linux.sysctl", format!("{key} needs a {typ} namespace")))
            }
            Some(_) => {}
            None => return Err(invalid("linux.sysctl", format!("{key} is not namespaced"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_from(json: &str) -> Spec {
        serde_json::from_str(json).expect("test spec parses")
    }

    const BASE: &str = r#"{"ociVersion":"VERSION","root":{"path":"rootfs"},
        "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
        "linux":{"namespaces":[NAMESPACES]}}"#;

    fn spec(version: &str, namespaces: &str) -> Spec {
        spec_from(&BASE.replace("VERSION", version).replace("NAMESPACES", namespaces))
    }

    #[test]
    fn accepts_every_1x_version() {
        for v in ["1.0.0", "1.0.2-dev", "1.2.0", "1.3.0", "1.9.7"] {
            validate(&spec(v, r#"{"type":"mount"}"#)).expect(v);
        }
        for v in ["2.0.0", "0.9", "1"] {
            assert!(validate(&spec(v, r#"{"type":"mount"}"#)).is_err(), "{v}");
        }
    }

    #[test]
    fn rejects_contradictions() {
        let twice = spec("1.0.2", r#"{"type":"mount"},{"type":"mount"}"#);
        assert!(validate(&twice).unwrap_err().to_string().contains("twice"));
        let user_without_maps = spec("1.0.2", r#"{"type":"mount"},{"type":"user"}"#);
        assert!(validate(&user_without_maps).unwrap_err().to_string().contains("uidMappings"));
        let mut host_uts = spec("1.0.2", r#"{"type":"mount"}"#);
        host_uts.set_hostname(Some("x".into()));
        assert!(validate(&host_uts).unwrap_err().to_string().contains("hostname"));
    }

    #[test]
    fn accepts_names_in_a_joined_uts_namespace_and_no_mount_namespace() {
        let mut joined = spec("1.0.2", r#"{"type":"uts","path":"/proc/1/ns/uts"}"#);
        joined.set_hostname(Some("x".into()));
        joined.set_domainname(Some("y".into()));
        validate(&joined).expect("joined uts namespace with names");
        validate(&spec("1.0.2", "")).expect("no namespace at all");
    }
}
