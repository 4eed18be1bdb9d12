//! `GET /containers/{id}/changes` (`docker diff`): the container's writable layer
//! against its image. An entry of the upper directory is added (A) when no layer below
//! has it, changed (C) when one does, and an overlay whiteout is a deletion (D). The
//! mount points berth makes for every container (/proc, /etc/hosts, ...) are left out,
//! as dockerd's init layer hides them.
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path as FsPath, PathBuf};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::containers::find;
use super::{DockerError, DockerResult};

const MODIFIED: u8 = 0;
const ADDED: u8 = 1;
const DELETED: u8 = 2;

/// Where berth mounts over the rootfs in every container.
const MOUNT_POINTS: [&str; 9] = ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

pub fn routes() -> Router<super::State> {
    Router::new().route("/containers/{id}/changes", get(changes))
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether a layer below the upper directory has `relative` (a whiteout there is no file).
fn in_lower(lowers: &[PathBuf], relative: &FsPath) -> bool {
    for lower in lowers {
        if let Ok(meta) = std::fs::symlink_metadata(lower.join(relative)) {
            return !is_whiteout(&meta);
        }
    }
    false
}

/// Every change under `upper`, sorted by path.
pub fn layer_changes(upper: &FsPath, lowers: &[PathBuf]) -> std::io::Result<Vec<(String, u8)>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(upper.join(&dir))? {
            let entry = entry?;
            let relative = dir.join(entry.file_name());
            let meta = entry.metadata()?;
            let kind = if is_whiteout(&meta) {
                DELETED
            } else if in_lower(lowers, &relative) {
                MODIFIED
            } else {
                ADDED
            };
            if meta.is_dir() {
                pending.push(relative.clone());
            }
            found.push((format!("/{}", relative.display()), kind));
        }
    }
    found.sort();
    Ok(hide_mount_points(found))
}

/// Drops berth's mount points, and the changed directories that only held them.
fn hide_mount_points(found: Vec<(String, u8)>) -> Vec<(String, u8)> {
    let kept: Vec<(String, u8)> = found.into_iter().filter(|(path, _)| !MOUNT_POINTS.contains(&path.as_str())).collect();
    let has_child = |dir: &str| kept.iter().any(|(other, _)| other.len() > dir.len() && other.starts_with(dir) && other.as_bytes()[dir.len()] == b'/');
    let emptied = |path: &str| MOUNT_POINTS.iter().any(|m| m.starts_with(path) && m.as_bytes().get(path.len()) == Some(&b'/'));
    kept.iter().filter(|(path, kind)| *kind != MODIFIED || !emptied(path) || has_child(path)).cloned().collect()
}

async fn changes(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Json<Value>> {
    let record = find(&docker.core, &id)?;
    let overlay = docker.core.images.active_mounts(&record.snapshot_key).map_err(|e| DockerError::internal(format!("the container's layer: {e}")))?;
    let listed = tokio::task::spawn_blocking(move || layer_changes(&overlay.upperdir, &overlay.lowerdirs))
        .await
        .map_err(|e| DockerError::internal(e.to_string()))?
        .map_err(|e| DockerError::internal(format!("reading the container's layer: {e}")))?;
    let entries: Vec<Value> = listed.into_iter().map(|(path, kind)| json!({"Path": path, "Kind": kind})).collect();
    Ok(Json(if entries.is_empty() { Value::Null } else { Value::Array(entries) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_changed_deleted_and_mount_points_hidden() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
        for sub in ["etc", "tmp", "bin"] {
            std::fs::create_dir_all(lower.join(sub)).expect("mkdir");
        }
        std::fs::write(lower.join("bin/gone"), "x").expect("write");
        for sub in ["etc", "tmp/new", "bin", "proc"] {
            std::fs::create_dir_all(upper.join(sub)).expect("mkdir");
        }
        std::fs::write(upper.join("etc/hosts"), "").expect("write");
        std::fs::write(upper.join("tmp/new/file"), "x").expect("write");
        nix::sys::stat::mknod(&upper.join("bin/gone"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).expect("whiteout");
        let found = layer_changes(&upper, &[lower]).expect("changes");
        let expected: Vec<(String, u8)> = vec![("/bin".into(), 0), ("/bin/gone".into(), 2), ("/tmp".into(), 0), ("/tmp/new".into(), 1), ("/tmp/new/file".into(), 1)];
        assert_eq!(found, expected);
    }
}
