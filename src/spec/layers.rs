//! Looking a path up in an image's layers (top first) as the overlay would show it,
//! inside the image only: a symlink is followed within the image (an absolute target
//! starts again at the image's root, `..` stops there), and no host path is used whose
//! components in that layer are not real directories. So a layer's `etc -> /etc` leads
//! to the image's `/etc`, never to the host's.
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed in one lookup, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// What a lookup found: the file in the layer that shows it.
pub struct Found {
    pub path: PathBuf,
    pub metadata: std::fs::Metadata,
}

/// `path` (absolute or relative to the image's root) in the merged view of `layers`,
/// symlinks followed inside the image; `None` when it does not exist (or a whiteout
/// hides it, or a symlink loop or a non-directory is in the way).
pub fn find(layers: &[PathBuf], path: &str) -> Option<Found> {
    let mut pending: VecDeque<OsString> = names(Path::new(path));
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    let mut found = None;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        resolved.push(name);
        let entry = shown_entry(layers, &resolved)?;
        let kind = entry.metadata.file_type();
        if kind.is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINKS {
                return None;
            }
            let target = std::fs::read_link(&entry.path).ok()?;
            resolved.pop();
            if target.is_absolute() {
                resolved.clear();
            }
            let mut next = names(&target);
            next.extend(pending.drain(..));
            pending = next;
            found = None;
            continue;
        }
        if !kind.is_dir() && !pending.is_empty() {
            return None;
        }
        found = Some(entry);
    }
    match found {
        Some(entry) => Some(entry),
        None if resolved.is_empty() => layers.first().and_then(|top| Some(Found { path: top.clone(), metadata: std::fs::metadata(top).ok()? })),
        None => shown_entry(layers, &resolved),
    }
}

/// The plain names and `..` of `path` (`.`, the root and prefixes dropped).
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// The entry the topmost layer holding `resolved` shows, if that layer reaches it
/// through real directories; a whiteout (a 0:0 character device) hides it.
fn shown_entry(layers: &[PathBuf], resolved: &[OsString]) -> Option<Found> {
    for layer in layers {
        let mut path = layer.clone();
        let mut reachable = true;
        for (depth, name) in resolved.iter().enumerate() {
            path.push(name);
            if depth + 1 < resolved.len() && !std::fs::symlink_metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
                reachable = false;
                break;
            }
        }
        if !reachable {
            continue;
        }
        if let Ok(metadata) = std::fs::symlink_metadata(&path) {
            if metadata.file_type().is_char_device() && metadata.rdev() == 0 {
                return None;
            }
            return Some(Found { path, metadata });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_image_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
        std::fs::create_dir_all(lower.join("private/etc")).expect("mkdir");
        std::fs::create_dir_all(&upper).expect("mkdir");
        std::fs::write(lower.join("private/etc/passwd"), "image\n").expect("write");
        // `etc` points at an absolute path: inside the image it is /private/etc.
        std::os::unix::fs::symlink("/private/etc", upper.join("etc")).expect("symlink");
        // `host` points at the host's /usr, which the image does not have.
        std::os::unix::fs::symlink("/usr", upper.join("host")).expect("symlink");
        std::os::unix::fs::symlink("../../../../../../etc", upper.join("up")).expect("symlink");
        std::os::unix::fs::symlink("loop", upper.join("loop")).expect("symlink");
        let layers = vec![upper, lower.clone()];
        let found = find(&layers, "/etc/passwd").expect("the image's passwd");
        assert_eq!(found.path, lower.join("private/etc/passwd"));
        assert!(find(&layers, "/host/bin").is_none(), "the host's /usr/bin was reached");
        // `..` stops at the image's root: up/passwd is the image's /etc/passwd.
        assert_eq!(find(&layers, "up/passwd").expect("inside").path, lower.join("private/etc/passwd"));
        assert!(find(&layers, "/loop").is_none());
        assert!(find(&layers, "/private/etc").expect("dir").metadata.is_dir());
        assert!(find(&layers, "/").is_some());
    }
}
