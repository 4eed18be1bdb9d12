//! Overlay root filesystems for containers in a user namespace, as containerd 2 mounts
//! them: the overlay's `uidmap=`/`gidmap=` options (container:host:size) make each lower
//! layer an idmapped mount (so the image's files belong to the container's root), and
//! the upper directory's top is given to the mapped root. An overlay cannot itself be
//! idmapped, hence the layers one by one; the layer mounts are detached again once the
//! overlay holds them, so nothing is left in the mount table.
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_runtime::mount_api;
use berth_runtime::rootfs::idmap;
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

use crate::error::{ShimError, ShimResult};


/// One range of an id map: `size` ids from `container` inside are `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The id maps an overlay mount asks for, and its remaining options.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IdMapOptions {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    pub rest: Vec<String>,
}

impl IdMapOptions {
    /// Takes `uidmap=`/`gidmap=` out of `options` (each `c:h:s`, ranges separated by `,`).
    pub fn split(options: &[String]) -> ShimResult<IdMapOptions> {
        let mut parsed = IdMapOptions::default();
        for option in options {
            match option.split_once('=') {
                Some(("uidmap", ranges)) => parsed.uids.extend(parse_ranges(ranges)?),
                Some(("gidmap", ranges)) => parsed.gids.extend(parse_ranges(ranges)?),
                _ => parsed.rest.push(option.clone()),
            }
        }
        if parsed.uids.is_empty() != parsed.gids.is_empty() {
            return Err(ShimError::Invalid("an idmapped overlay needs both uidmap and gidmap".into()));
        }
        Ok(parsed)
    }

    pub fn is_mapped(&self) -> bool {
        !self.uids.is_empty()
    }

    /// The host ids of the container's root.
    fn host_root(&self) -> ShimResult<(u32, u32)> {
        let root = |ranges: &[IdRange]| ranges.iter().find(|r| r.container == 0).map(|r| r.host);
        match (root(&self.uids), root(&self.gids)) {
            (Some(uid), Some(gid)) => Ok((uid, gid)),
            _ => Err(ShimError::Invalid("an idmapped overlay must map the container's root (id 0)".into())),
        }
    }
}

fn parse_ranges(text: &str) -> ShimResult<Vec<IdRange>> {
    text.split(',')
        .map(|range| {
            let fields: Vec<&str> = range.split(':').collect();
            let number = |s: &str| s.parse::<u32>().map_err(|_| ShimError::Invalid(format!("id map {range:?}: {s:?} is not a number")));
            match fields.as_slice() {
                [container, host, size] => Ok(IdRange { container: number(container)?, host: number(host)?, size: number(size)? }),
                _ => Err(ShimError::Invalid(format!("id map {range:?}: expected container:host:size"))),
            }
        })
        .collect()
}

/// A user namespace with the maps of `maps` (made by the runtime's helper).
fn mapped_user_namespace(maps: &IdMapOptions) -> ShimResult<OwnedFd> {
    let convert = |ranges: &[IdRange]| -> ShimResult<Vec<LinuxIdMapping>> {
        ranges
            .iter()
            .map(|r| {
                LinuxIdMappingBuilder::default()
                    .container_id(r.container)
                    .host_id(r.host)
                    .size(r.size)
                    .build()
                    .map_err(|e| ShimError::Invalid(format!("id map {r:?}: {e}")))
            })
            .collect()
    };
    idmap::user_namespace_with(&convert(&maps.uids)?, &convert(&maps.gids)?).map_err(|e| ShimError::io("creating a user namespace with the pod's maps", e))
}

/// Places an idmapped copy of the mount at `source` on `target` (an empty directory).
fn idmapped_bind(source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), Errno> {
    let source = CString::new(source.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let target = CString::new(target.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let tree = mount_api::clone_tree(&source, false, true)?;
    mount_api::set_idmap(&tree, userns, false)?;
    mount_api::attach_tree(&tree, &target)
}

/// The idmapped layer mounts made for one overlay; dropped, they are detached and their
/// mount points removed (the overlay keeps the layers it holds).
pub struct MappedLayers {
    dir: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Drop for MappedLayers {
    fn drop(&mut self) {
        for point in &self.mounted {
            let _ = umount2(point, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Rewrites an overlay's options so that it mounts idmapped lower layers (made under
/// `scratch`), and gives the upper directory's top to the container's root. Returns
/// the new options and the layer mounts to drop once the overlay is mounted.
pub fn map_overlay_layers(maps: &IdMapOptions, scratch: &Path) -> ShimResult<(Vec<String>, MappedLayers)> {
    let userns = mapped_user_namespace(maps)?;
    std::fs::create_dir_all(scratch).map_err(|e| ShimError::io(format!("creating {}", scratch.display()), e))?;
    let mut layers = MappedLayers { dir: scratch.to_path_buf(), mounted: Vec::new() };
    let mut options = Vec::with_capacity(maps.rest.len());
    for option in &maps.rest {
        match option.split_once('=') {
            Some(("lowerdir", lowers)) => {
                let mut mapped = Vec::new();
                for (index, lower) in lowers.split(':').enumerate() {
                    let point = scratch.join(index.to_string());
                    std::fs::create_dir_all(&point).map_err(|e| ShimError::io(format!("creating {}", point.display()), e))?;
                    idmapped_bind(Path::new(lower), &point, &userns).map_err(|e| ShimError::io(format!("idmapping layer {lower}"), e))?;
                    layers.mounted.push(point.clone());
                    mapped.push(point.display().to_string());
                }
                options.push(format!("lowerdir={}", mapped.join(":")));
            }
            Some(("upperdir", upper)) => {
                give_to_root(Path::new(upper), maps)?;
                options.push(option.clone());
            }
            _ => options.push(option.clone()),
        }
    }
    Ok((options, layers))
}

/// The upper directory's top belongs to the container's root, so that it may write in
/// the root directory; what it creates below gets its ids from the kernel.
fn give_to_root(upper: &Path, maps: &IdMapOptions) -> ShimResult<()> {
    let (uid, gid) = maps.host_root()?;
    nix::unistd::chown(upper, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(|e| ShimError::io(format!("giving {} to the container's root", upper.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn id_maps_are_split_from_the_other_options() {
        let parsed = IdMapOptions::split(&strings(&["lowerdir=/a:/b", "uidmap=0:1000:65536", "gidmap=0:2000:10,10:3000:5"])).expect("parse");
        assert_eq!(parsed.uids, vec![IdRange { container: 0, host: 1000, size: 65536 }]);
        assert_eq!(parsed.gids.len(), 2);
        assert_eq!(parsed.rest, strings(&["lowerdir=/a:/b"]));
        assert_eq!(parsed.host_root().expect("root"), (1000, 2000));
        assert!(!IdMapOptions::split(&strings(&["lowerdir=/a"])).expect("plain").is_mapped());
    }

    #[test]
    fn bad_id_maps_are_refused() {
        assert!(IdMapOptions::split(&strings(&["uidmap=0:1000"])).is_err());
        assert!(IdMapOptions::split(&strings(&["uidmap=0:x:1", "gidmap=0:1:1"])).is_err());
        assert!(IdMapOptions::split(&strings(&["uidmap=0:1000:10"])).is_err(), "a uid map without a gid map");
        let unmapped_root = IdMapOptions::split(&strings(&["uidmap=1:1000:10", "gidmap=1:1000:10"])).expect("parse");
        assert!(unmapped_root.host_root().is_err());
    }
}
