//! The spec's mounts: bind mounts and filesystem mounts with their flags, data,
//! propagation and recursive attributes, each on a destination resolved in the rootfs.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::options::{self, ParsedOptions};
use super::paths::{open_in_root, open_or_create, proc_fd_path, Leaf};
use super::{cgroupfs, RootfsConfig, RootfsError};

fn mount_error(destination: &Path, what: &'static str, source: Errno) -> RootfsError {
    RootfsError::Mount { destination: destination.display().to_string(), what, source }
}

pub fn change_propagation(target: &str, flags: MsFlags) -> Result<(), RootfsError> {
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| mount_error(Path::new(target), "changing propagation", e))
}

/// Makes private (not recursively) the mount that holds `path`: the one whose mount
/// point is `path` or its nearest ancestor, from this namespace's mountinfo.
pub fn make_holding_mount_private(path: &Path) -> Result<(), RootfsError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| mount_error(path, "reading mountinfo", Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let holder = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|mount_point| path.starts_with(mount_point))
        .max_by_key(|mount_point| mount_point.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"));
    mount(None::<&str>, &holder, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| mount_error(&holder, "making the rootfs's mount private", e))
}

/// (mount point, root within its filesystem) of each mount at or below `path` in this
/// namespace's mountinfo, deepest first, once per mount stacked there.
fn mounts_at_or_below(path: &Path) -> Result<Vec<(PathBuf, PathBuf)>, RootfsError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| mount_error(path, "reading mountinfo", Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let mut found: Vec<(PathBuf, PathBuf)> = mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ').skip(3);
            let root = unescape_mountinfo(fields.next()?);
            Some((unescape_mountinfo(fields.next()?), root))
        })
        .filter(|(mount_point, _)| mount_point.starts_with(path))
        .collect();
    // Stable: mounts stacked on one point keep their order, the top one last.
    found.sort_by_key(|(mount_point, _)| std::cmp::Reverse(mount_point.components().count()));
    Ok(found)
}

/// Unmounts what a container without a mount namespace made: every mount below the
/// rootfs, then the rootfs's bind onto itself: the top mount there when another is
/// under it, or the only one when it binds a directory (a filesystem the caller
/// mounted on the rootfs has its root there, and stays).
pub fn unmount_below(rootfs: &Path) -> Result<(), RootfsError> {
    let rootfs = rootfs.canonicalize().unwrap_or_else(|_| rootfs.to_path_buf());
    let found = mounts_at_or_below(&rootfs)?;
    let (at_rootfs, below): (Vec<_>, Vec<_>) = found.into_iter().partition(|(point, _)| *point == rootfs);
    let self_bind = match at_rootfs.as_slice() {
        [(_, root)] if root != Path::new("/") => Some(rootfs.clone()),
        [_, _, ..] => Some(rootfs.clone()),
        _ => None,
    };
    for mount_point in below.into_iter().map(|(point, _)| point).chain(self_bind) {
        match nix::mount::umount2(&mount_point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(mount_error(&mount_point, "unmounting", e)),
        }
    }
    Ok(())
}

/// A mountinfo path field, with its octal escapes (`\040` for a space) decoded.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                decoded.push(byte);
                index += 4;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(decoded))
}

/// pivot_root needs the new root to be a mount point.
pub fn bind_rootfs_onto_itself(rootfs: &Path) -> Result<(), RootfsError> {
    mount(Some(rootfs), rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| mount_error(rootfs, "binding the rootfs onto itself", e))
}

/// The idmapped copy of the rootfs tree, on top of it: a mount point for pivot_root.
pub fn attach_idmapped_rootfs(tree: &OwnedFd, rootfs: &Path) -> Result<(), RootfsError> {
    let path = std::ffi::CString::new(rootfs.as_os_str().as_encoded_bytes())
        .map_err(|_| mount_error(rootfs, "attaching the idmapped rootfs", Errno::EINVAL))?;
    crate::mount_api::attach_tree(tree, &path).map_err(|e| mount_error(rootfs, "attaching the idmapped rootfs (move_mount)", e))
}

/// Mounts one spec mount; `idmapped` is the tree the runtime made for an idmapped one.
pub fn mount_one(root: &OwnedFd, spec_mount: &Mount, config: &RootfsConfig, idmapped: Option<&OwnedFd>) -> Result<(), RootfsError> {
    let destination = spec_mount.destination();
    let typ = spec_mount.typ().as_deref().unwrap_or_default();
    let parsed = options::parse(spec_mount.options().as_deref().unwrap_or_default());
    if destination.as_os_str().is_empty() || destination == Path::new("/") {
        return Err(RootfsError::Invalid { destination: destination.display().to_string(), problem: "not a valid destination".into() });
    }
    if typ == "cgroup" {
        return cgroupfs::mount_cgroups(root, destination, &parsed, config);
    }
    if parsed.is_bind() || typ == "bind" {
        bind(root, spec_mount, &parsed, idmapped)?;
    } else {
        filesystem(root, spec_mount, typ, &parsed)?;
    }
    finish_attributes(root, destination, &parsed)
}

fn bind(root: &OwnedFd, spec_mount: &Mount, parsed: &ParsedOptions, idmapped: Option<&OwnedFd>) -> Result<(), RootfsError> {
    let destination = spec_mount.destination();
    let source = spec_mount.source().as_deref().ok_or_else(|| RootfsError::Invalid {
        destination: destination.display().to_string(),
        problem: "a bind mount needs a source".into(),
    })?;
    let metadata = std::fs::metadata(source).map_err(|e| RootfsError::Invalid {
        destination: destination.display().to_string(),
        problem: format!("source {}: {e}", source.display()),
    })?;
    let leaf = if metadata.is_dir() { Leaf::Directory } else { Leaf::File };
    let target = open_or_create(root, destination, leaf)?;
    match (idmapped, parsed.idmap) {
        (Some(tree), _) => crate::mount_api::attach_tree(tree, proc_fd_path(&target).as_c_str())
            .map_err(|e| mount_error(destination, "attaching the idmapped tree (move_mount)", e))?,
        (None, Some(_)) => {
            return Err(RootfsError::Invalid { destination: destination.display().to_string(), problem: "no idmapped tree was made".into() })
        }
        (None, None) => {
            let flags = MsFlags::MS_BIND | (parsed.flags & MsFlags::MS_REC);
            mount(Some(source), proc_fd_path(&target).as_c_str(), None::<&str>, flags, None::<&str>)
                .map_err(|e| mount_error(destination, "bind", e))?
        }
    }
    let extra = parsed.flags - MsFlags::MS_BIND - MsFlags::MS_REC;
    if !extra.is_empty() || !parsed.cleared.is_empty() {
        let mounted = reopen(root, destination)?;
        remount_bind(&proc_fd_path(&mounted), extra, parsed.cleared)
            .map_err(|e| mount_error(destination, "remounting the bind with its flags", e))?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks (nosuid,
/// nodev, noexec, atime ones) unless explicitly cleared.
pub fn remount_bind(target: &std::ffi::CStr, flags: MsFlags, cleared: MsFlags) -> Result<(), Errno> {
    let locked = statvfs(target).map(|s| locked_flags(s.flags())).unwrap_or(MsFlags::empty());
    let all = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | (locked - cleared);
    mount(None::<&str>, target, None::<&str>, all, None::<&str>)
}

fn locked_flags(current: FsFlags) -> MsFlags {
    let pairs = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ];
    pairs.iter().filter(|(st, _)| current.contains(*st)).fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms)
}

fn filesystem(root: &OwnedFd, spec_mount: &Mount, typ: &str, parsed: &ParsedOptions) -> Result<(), RootfsError> {
    let destination = spec_mount.destination();
    let target = open_or_create(root, destination, Leaf::Directory)?;
    let source = spec_mount.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let data = parsed.data();
    let flags = parsed.flags - MsFlags::MS_REMOUNT;
    let target_path = proc_fd_path(&target);
    match mount(Some(&source), target_path.as_c_str(), Some(typ), flags, data.as_deref()) {
        // sysfs cannot be mounted without owning the network namespace: bind the host's.
        Err(Errno::EPERM) if typ == "sysfs" => {
            mount(Some("/sys"), target_path.as_c_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| mount_error(destination, "binding the host's /sys", e))?;
            let mounted = reopen(root, destination)?;
            remount_bind(&proc_fd_path(&mounted), flags, MsFlags::empty())
                .map_err(|e| mount_error(destination, "remounting /sys", e))
        }
        Err(e) => Err(mount_error(destination, typ_name(typ), e)),
        Ok(()) => Ok(()),
    }
}

fn typ_name(typ: &str) -> &'static str {
    match typ {
        "proc" => "mounting proc",
        "tmpfs" => "mounting tmpfs",
        "sysfs" => "mounting sysfs",
        "devpts" => "mounting devpts",
        "mqueue" => "mounting mqueue",
        _ => "mounting",
    }
}

/// Resolves the destination again, now that a mount covers it.
pub fn reopen(root: &OwnedFd, destination: &Path) -> Result<OwnedFd, RootfsError> {
    open_in_root(root, destination, libc::O_PATH, 0).map_err(|e| mount_error(destination, "resolving the new mount", e))
}

/// Propagation changes and recursive attributes, applied to the new mount.
fn finish_attributes(root: &OwnedFd, destination: &Path, parsed: &ParsedOptions) -> Result<(), RootfsError> {
    if parsed.propagation.is_empty() && parsed.recursive_set == 0 && parsed.recursive_clear == 0 {
        return Ok(());
    }
    let mounted = reopen(root, destination)?;
    let path = proc_fd_path(&mounted);
    for flags in &parsed.propagation {
        mount(None::<&str>, path.as_c_str(), None::<&str>, *flags, None::<&str>)
            .map_err(|e| mount_error(destination, "changing propagation", e))?;
    }
    if parsed.recursive_set != 0 || parsed.recursive_clear != 0 {
        crate::mount_api::set_mount_attributes(&mounted, parsed.recursive_set, parsed.recursive_clear, true)
            .map_err(|e| mount_error(destination, "setting recursive attributes", e))?;
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b/c\\134d"), PathBuf::from("/a b/c\\d"));
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
    }
}
