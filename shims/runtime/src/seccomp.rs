//! TEMP STUB (not committed): replaced by the seccomp branch.
#[derive(Debug, thiserror::Error)]
#[error("seccomp stub")]
pub struct SeccompError;
pub struct SeccompProgram;
pub fn compile(_p: &oci_spec::runtime::LinuxSeccomp) -> Result<SeccompProgram, SeccompError> { Err(SeccompError) }
impl SeccompProgram {
    pub fn load(&self) -> Result<Option<std::os::fd::OwnedFd>, SeccompError> { Err(SeccompError) }
}
pub fn supported_features() -> serde_json::Value { serde_json::json!({"enabled": true}) }
