//! TEMP STUB (not committed): replaced by the cgroups branch.
use serde::{Deserialize, Serialize};
#[derive(Debug, thiserror::Error)]
#[error("cgroup stub")]
pub struct CgroupError;
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerCgroup { path: std::path::PathBuf }
#[derive(Debug, Serialize)]
pub struct CgroupStats {}
impl ContainerCgroup {
    pub fn create(_p: Option<&std::path::Path>, _id: &str, _r: Option<&oci_spec::runtime::LinuxResources>) -> Result<Self, CgroupError> { Err(CgroupError) }
    pub fn add_process(&self, _pid: i32) -> Result<(), CgroupError> { Err(CgroupError) }
    pub fn update(&self, _r: &oci_spec::runtime::LinuxResources) -> Result<(), CgroupError> { Err(CgroupError) }
    pub fn freeze(&self) -> Result<(), CgroupError> { Err(CgroupError) }
    pub fn thaw(&self) -> Result<(), CgroupError> { Err(CgroupError) }
    pub fn is_frozen(&self) -> Result<bool, CgroupError> { Err(CgroupError) }
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> { Err(CgroupError) }
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> { Err(CgroupError) }
    pub fn destroy(&self) -> Result<(), CgroupError> { Err(CgroupError) }
    pub fn path(&self) -> &std::path::Path { &self.path }
}
