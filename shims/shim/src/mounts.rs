//! The root filesystem mounts containerd passes in Create (e.g. one overlay from
//! the snapshotter), mounted on `<bundle>/rootfs` and unmounted at Delete.

use std::path::Path;

use containerd_shim_protos::api::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{ShimError, ShimResult};

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
        let (flags, data) = parse_options(&m.options);
        let fstype = if m.type_ == "bind" || m.type_.is_empty() { None } else { Some(m.type_.as_str()) };
        let data = if data.is_empty() { None } else { Some(data.as_str()) };
        if let Err(e) = mount(Some(m.source.as_str()), target, fstype, flags, data) {
            for _ in 0..index {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(ShimError::io(format!("mounting {} ({}) on {}", m.source, m.type_, target.display()), e));
        }
        if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
            let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            let _ = mount(None::<&str>, target, None::<&str>, remount, None::<&str>);
        }
    }
    Ok(true)
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
