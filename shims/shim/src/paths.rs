//! Where the shim keeps things. Under a root (`$BERTH_SHIM_ROOT`, default
//! `/run/berth-shim`): `<namespace>/runtime` is the runtime's state root, and
//! `<namespace>/<id>/` one container's shim state (exit records, console sockets).
//! Sockets live in `s/<hash>` so their paths stay short.

use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/run/berth-shim";
/// The annotation containerd's CRI plugin puts on every container of a pod.
pub const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    namespace: String,
}

impl Layout {
    pub fn new(namespace: &str) -> Layout {
        let root = std::env::var_os("BERTH_SHIM_ROOT").map(PathBuf::from).unwrap_or_else(|| DEFAULT_ROOT.into());
        Layout { root, namespace: namespace.to_string() }
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.root.join(&self.namespace).join("runtime")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(&self.namespace).join(id)
    }

    /// The socket of the shim serving `group` for the daemon at `address`.
    pub fn socket(&self, address: &str, group: &str) -> PathBuf {
        let key = format!("{address}\0{}\0{group}", self.namespace);
        self.root.join("s").join(format!("{:016x}", fnv1a(key.as_bytes())))
    }
}

/// Refuses an id (of a container, an exec, a namespace) that is not one plain path
/// component of at most 76 characters from `[A-Za-z0-9._-]`, before it names any
/// directory (as containerd's identifiers are).
pub fn validate_id(kind: &str, id: &str) -> Result<(), crate::error::ShimError> {
    let plain = id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let component = !id.is_empty() && id != "." && id != ".." && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if plain && component && id.len() <= 76 {
        return Ok(());
    }
    Err(crate::error::ShimError::Invalid(format!("invalid {kind} id {id:?}: use 1 to 76 of A-Z a-z 0-9 . _ -, starting with a letter or digit")))
}

/// The group a container's shim serves: its pod's sandbox id, or its own id.
pub fn group_of(bundle: &Path, id: &str) -> String {
    let config = std::fs::read(bundle.join("config.json")).unwrap_or_default();
    let spec: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
    spec.pointer(&format!("/annotations/{}", SANDBOX_ANNOTATION.replace('/', "~1")))
        .and_then(|v| v.as_str())
        .filter(|group| !group.is_empty())
        .unwrap_or(id)
        .to_string()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_differ_per_namespace_and_group_and_stay_short() {
        let a = Layout { root: "/run/berth-shim".into(), namespace: "a".into() };
        let b = Layout { root: "/run/berth-shim".into(), namespace: "b".into() };
        assert_ne!(a.socket("/c.sock", "x"), b.socket("/c.sock", "x"));
        assert_ne!(a.socket("/c.sock", "x"), a.socket("/c.sock", "y"));
        assert_eq!(a.socket("/c.sock", "x"), a.socket("/c.sock", "x"));
        assert!(a.socket("/c.sock", "x").as_os_str().len() < 60);
    }

    #[test]
    fn ids_are_one_plain_path_component() {
        for good in ["c1", "0123abcdef", "my.container_1-x", "a".repeat(76).as_str()] {
            assert!(validate_id("container", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "../etc", "a/b", "/abs", ".hidden", "-flag", "a b", "a\0b", "a".repeat(77).as_str()] {
            assert!(validate_id("container", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn group_is_the_sandbox_annotation_or_the_id() {
        let dir = std::env::temp_dir().join(format!("berth-shim-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(group_of(&dir, "c1"), "c1");
        std::fs::write(dir.join("config.json"), r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}"#).unwrap();
        assert_eq!(group_of(&dir, "c1"), "pod");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
