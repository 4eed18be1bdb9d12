//! TEMP STUB (not committed): replaced by the rootfs branch.
#[derive(Debug, thiserror::Error)]
#[error("rootfs stub")]
pub struct RootfsError;
pub struct RootfsConfig<'a> {
    pub spec: &'a oci_spec::runtime::Spec,
    pub rootfs: std::path::PathBuf,
    pub no_pivot: bool,
    pub in_user_namespace: bool,
    pub in_cgroup_namespace: bool,
}
pub fn prepare(_c: &RootfsConfig) -> Result<(), RootfsError> { Err(RootfsError) }
pub fn enter(_c: &RootfsConfig) -> Result<(), RootfsError> { Err(RootfsError) }
pub fn finish(_c: &RootfsConfig) -> Result<(), RootfsError> { Err(RootfsError) }
