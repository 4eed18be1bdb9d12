//! A container's root filesystem from its image: resolving the image, preparing the
//! container's writable snapshot on top of the image's layers, and releasing it.
use std::path::PathBuf;

use super::container::PreparedRootfs;
use super::*;

impl Core {
    pub(crate) async fn prepare_rootfs(&self, image: &str, _snapshot_key: &str) -> CoreResult<PreparedRootfs> {
        Err(CoreError::NotFound(format!("image {image:?} not found")))
    }

    pub(crate) async fn release_rootfs(&self, _snapshot_key: &str) -> CoreResult<()> {
        Ok(())
    }

    pub(crate) fn writable_layer_dir(&self, _snapshot_key: &str) -> Option<PathBuf> {
        None
    }
}
