//! What each runtime handler can do, as the CRI's Status reports it: berth's own runtime
//! always supports recursive read-only and idmapped mounts; an external runc-compatible
//! binary is asked once, through its `features` command (runtime-spec `features.json`).
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::Core;

/// How long an external runtime may take to answer `features`.
const FEATURES_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerFeatures {
    pub recursive_read_only_mounts: bool,
    pub user_namespaces: bool,
}

impl HandlerFeatures {
    const BUILT_IN: HandlerFeatures = HandlerFeatures { recursive_read_only_mounts: true, user_namespaces: true };

    /// Reads a runtime's `features` output: `rro` among the mount options, and idmapped
    /// mounts enabled (user namespaces need them for volumes).
    pub fn from_features_json(features: &serde_json::Value) -> HandlerFeatures {
        let mount_options = features.get("mountOptions").and_then(|o| o.as_array());
        let rro = mount_options.is_some_and(|options| options.iter().any(|o| o == "rro"));
        let idmap = features.pointer("/linux/mountExtensions/idmap/enabled").and_then(|e| e.as_bool()).unwrap_or(false);
        let userns = features.pointer("/linux/namespaces").and_then(|n| n.as_array()).is_some_and(|n| n.iter().any(|ns| ns == "user"));
        HandlerFeatures { recursive_read_only_mounts: rro, user_namespaces: idmap && userns }
    }
}

impl Core {
    /// The features of every handler by name (the empty name is the default handler).
    pub async fn handler_features(&self) -> BTreeMap<String, HandlerFeatures> {
        self.handler_features
            .get_or_init(|| async {
                let mut features = BTreeMap::from([(String::new(), HandlerFeatures::BUILT_IN)]);
                for (name, handler) in &self.config.runtimes {
                    let found = match &handler.path {
                        Some(path) => external_features(path).await,
                        None => HandlerFeatures::BUILT_IN,
                    };
                    features.insert(name.clone(), found);
                }
                features
            })
            .await
            .clone()
    }
}

/// Runs `<runtime> features`; a runtime that fails or has no such command supports none.
async fn external_features(binary: &Path) -> HandlerFeatures {
    let mut command = tokio::process::Command::new(binary);
    command.arg("features").stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(FEATURES_TIMEOUT, command.output()).await {
        Ok(Ok(output)) if output.status.success() => output.stdout,
        Ok(Ok(output)) => {
            tracing::warn!(runtime = %binary.display(), status = %output.status, "the runtime's features command failed");
            return HandlerFeatures::default();
        }
        Ok(Err(error)) => {
            tracing::warn!(runtime = %binary.display(), %error, "running the runtime's features command");
            return HandlerFeatures::default();
        }
        Err(_) => {
            tracing::warn!(runtime = %binary.display(), "the runtime's features command timed out");
            return HandlerFeatures::default();
        }
    };
    match serde_json::from_slice(&output) {
        Ok(features) => HandlerFeatures::from_features_json(&features),
        Err(error) => {
            tracing::warn!(runtime = %binary.display(), %error, "the runtime's features output is not JSON");
            HandlerFeatures::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_json_is_read_as_runc_writes_it() {
        let runc_1_1 = serde_json::json!({ "mountOptions": ["ro", "rro"], "linux": { "namespaces": ["user"] } });
        assert_eq!(HandlerFeatures::from_features_json(&runc_1_1), HandlerFeatures { recursive_read_only_mounts: true, user_namespaces: false });
        let runc_1_2 = serde_json::json!({ "mountOptions": ["rro"], "linux": { "namespaces": ["user"], "mountExtensions": { "idmap": { "enabled": true } } } });
        assert_eq!(HandlerFeatures::from_features_json(&runc_1_2), HandlerFeatures::BUILT_IN);
        assert_eq!(HandlerFeatures::from_features_json(&serde_json::json!({})), HandlerFeatures::default());
    }
}
