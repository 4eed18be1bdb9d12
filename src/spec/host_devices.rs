//! The host's device nodes, which a privileged container gets in its /dev (as with
//! containerd and Docker): every character and block device under `/dev`, except the
//! directories and nodes the runtime makes itself (pts, shm, mqueue, fd, the console).
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{json, Value};

/// Directories under /dev that are not device trees of the host.
const SKIPPED_DIRECTORIES: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
const SKIPPED_NODES: [&str; 1] = ["console"];

/// The OCI `linux.devices` entries for every device node under `dev`; unreadable
/// entries are skipped (devices come and go while the walk runs).
pub fn host_devices(dev: &Path) -> Vec<Value> {
    let mut devices = Vec::new();
    collect(dev, Path::new("/dev"), &mut devices);
    devices
}

fn collect(host_dir: &Path, container_dir: &Path, devices: &mut Vec<Value>) {
    let Ok(entries) = std::fs::read_dir(host_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Ok(file_type) = entry.file_type() else { continue };
        let container_path = container_dir.join(&name);
        if file_type.is_dir() {
            if !SKIPPED_DIRECTORIES.iter().any(|skipped| name == *skipped) {
                collect(&entry.path(), &container_path, devices);
            }
            continue;
        }
        let kind = match file_type {
            t if t.is_char_device() => "c",
            t if t.is_block_device() => "b",
            _ => continue,
        };
        if SKIPPED_NODES.iter().any(|skipped| name == *skipped) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        devices.push(json!({
            "path": container_path, "type": kind,
            "major": libc::major(meta.rdev()), "minor": libc::minor(meta.rdev()),
            "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_null_and_skips_pts() {
        let devices = host_devices(Path::new("/dev"));
        let paths: Vec<&str> = devices.iter().filter_map(|d| d["path"].as_str()).collect();
        assert!(paths.contains(&"/dev/null"), "{paths:?}");
        assert!(!paths.iter().any(|p| p.starts_with("/dev/pts/")), "{paths:?}");
        let null = devices.iter().find(|d| d["path"] == "/dev/null").expect("null");
        assert_eq!((null["type"].as_str(), null["major"].as_u64(), null["minor"].as_u64()), (Some("c"), Some(1), Some(3)));
    }
}
