//! The root filesystem mounts containerd passes in Create (e.g. one overlay from
//! the snapshotter), mounted on `<bundle>/rootfs` and unmounted at Delete.

use std::path::Path;

use containerd_shim_protos::api::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{ShimError, ShimResult};
use crate::idmap;

/// Splits mount options into flags and the data string.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "defaults" | "suid" | "dev" | "exec" | "async" => continue,
            other => {
                data.push(other);
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data.join(","))
}

/// Mounts each of `mounts` on `target` in order. Returns whether anything was mounted.
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> ShimResult<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    std::fs::create_dir_all(target).map_err(|e| ShimError::io(format!("creating {}", target.display()), e))?;
    for (index, m) in mounts.iter().enumerate() {
        let undo = || {
            for _ in 0..index {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
        };
        // The idmapped layers (if any) are dropped once the overlay holds them.
        let (options, _mapped_layers) = match mapped_options(m, target) {
            Ok(found) => found,
            Err(error) => {
                undo();
                return Err(error);
            }
        };
        let (flags, data) = parse_options(&options);
        let fstype = if m.type_ == "bind" || m.type_.is_empty() { None } else { Some(m.type_.as_str()) };
        let data = if data.is_empty() { None } else { Some(data.as_str()) };
        if let Err(e) = mount(Some(m.source.as_str()), target, fstype, flags, data) {
            undo();
            return Err(ShimError::io(format!("mounting {} ({}) on {}", m.source, m.type_, target.display()), e));
        }
        if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
            let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            let _ = mount(None::<&str>, target, None::<&str>, remount, None::<&str>);
        }
    }
    Ok(true)
}

/// An overlay's options with its `uidmap=`/`gidmap=` turned into idmapped layers (made
/// beside `target`), or the options as they are.
fn mapped_options(m: &Mount, target: &Path) -> ShimResult<(Vec<String>, Option<idmap::MappedLayers>)> {
    let maps = idmap::IdMapOptions::split(&m.options)?;
    if !maps.is_mapped() {
        return Ok((m.options.to_vec(), None));
    }
    if m.type_ != "overlay" {
        return Err(ShimError::Invalid(format!("uidmap and gidmap apply to overlay mounts, not {}", m.type_)));
    }
    let scratch = target.with_file_name(".idmapped-layers");
    let (options, layers) = idmap::map_overlay_layers(&maps, &scratch)?;
    Ok((options, Some(layers)))
}

/// Unmounts everything stacked on `target`.
pub fn unmount_rootfs(target: &Path) {
    while umount2(target, MntFlags::MNT_DETACH).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_flags_and_data() {
        let options: Vec<String> = ["ro", "rbind", "lowerdir=/a", "upperdir=/b", "nosuid"].iter().map(|s| s.to_string()).collect();
        let (flags, data) = parse_options(&options);
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID));
        assert_eq!(data, "lowerdir=/a,upperdir=/b");
        let (flags, _) = parse_options(&["ro".to_string(), "rw".to_string()]);
        assert!(!flags.contains(MsFlags::MS_RDONLY));
    }
}
