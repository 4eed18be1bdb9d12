//! A container's root filesystem from its image: resolving the image, preparing the
//! container's writable snapshot on top of the image's layers (which keeps them from
//! garbage collection), and releasing it.
use std::path::PathBuf;

use super::container::{PreparedRootfs, RootfsMount};
use super::*;
use crate::image::{Image, ImageError, OverlayMount};
use crate::spec::ImageDefaults;

impl From<ImageError> for CoreError {
    fn from(error: ImageError) -> Self {
        let message = error.to_string();
        match error {
            ImageError::NotFound(_) | ImageError::PlatformNotFound(_) => CoreError::NotFound(message),
            ImageError::InvalidReference { .. } | ImageError::AlreadyExists(_) => CoreError::InvalidArgument(message),
            ImageError::Unauthorized(_) => CoreError::Unauthenticated(message),
            ImageError::InUse(_) => CoreError::FailedPrecondition(message),
            ImageError::Timeout { .. } => CoreError::DeadlineExceeded(message),
            ImageError::Registry { .. } => CoreError::Unavailable(message),
            _ => CoreError::Internal(message),
        }
    }
}

/// The container's root mounts; in a pod with its own user namespace the overlay asks
/// the shim for idmapped layers (`uidmap=`/`gidmap=`, as containerd's options are).
fn rootfs_mounts(overlay: &OverlayMount, userns: Option<&UserNamespaceSpec>) -> Vec<RootfsMount> {
    if overlay.lowerdirs.is_empty() {
        let source = overlay.upperdir.display().to_string();
        return vec![RootfsMount { kind: "bind".into(), source, options: vec!["rbind".into(), "rw".into()] }];
    }
    let lower: Vec<String> = overlay.lowerdirs.iter().map(|dir| dir.display().to_string()).collect();
    let mut options = vec![
        format!("lowerdir={}", lower.join(":")),
        format!("upperdir={}", overlay.upperdir.display()),
        format!("workdir={}", overlay.workdir.display()),
    ];
    if let Some(maps) = userns {
        options.push(format!("uidmap={}", UserNamespaceSpec::mount_option(&maps.uids)));
        options.push(format!("gidmap={}", UserNamespaceSpec::mount_option(&maps.gids)));
    }
    vec![RootfsMount { kind: "overlay".into(), source: "overlay".into(), options }]
}

fn image_defaults(image: &Image, overlay: &OverlayMount) -> ImageDefaults {
    let config = &image.config;
    ImageDefaults {
        user: config.user.clone().unwrap_or_default(),
        env: config.env.clone().unwrap_or_default(),
        entrypoint: config.entrypoint.clone().unwrap_or_default(),
        cmd: config.cmd.clone().unwrap_or_default(),
        working_dir: config.working_dir.clone().unwrap_or_default(),
        layers: std::iter::once(overlay.upperdir.clone()).chain(overlay.lowerdirs.iter().cloned()).collect(),
    }
}

impl Core {
    pub(crate) async fn prepare_rootfs(&self, reference: &str, snapshot_key: &str, userns: Option<&UserNamespaceSpec>) -> CoreResult<PreparedRootfs> {
        let image = self.images.get(reference)?;
        let overlay = self.images.prepare_active(snapshot_key, &image.id)?;
        let image_ref = image.repo_digests.first().cloned().unwrap_or_else(|| image.id.clone());
        Ok(PreparedRootfs {
            image_id: image.id.clone(),
            image_ref,
            defaults: image_defaults(&image, &overlay),
            mounts: rootfs_mounts(&overlay, userns),
        })
    }

    /// Removes the container's writable layer; a missing one is fine.
    pub(crate) async fn release_rootfs(&self, snapshot_key: &str) -> CoreResult<()> {
        match self.images.remove_active(snapshot_key) {
            Ok(()) | Err(ImageError::NotFound(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) fn writable_layer_dir(&self, snapshot_key: &str) -> Option<PathBuf> {
        self.images.active_mounts(snapshot_key).ok().map(|overlay| overlay.upperdir)
    }
}
