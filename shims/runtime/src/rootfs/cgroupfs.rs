//! A `cgroup` mount inside the container: with a cgroup namespace, fresh cgroup
//! filesystems; without one, bind mounts of the container's own cgroup directories.
//! cgroup v1 hierarchies go in a tmpfs, one directory each; cgroup v2 is one mount.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use super::mounts::{remount_bind, reopen};
use super::options::ParsedOptions;
use super::paths::{open_in_root, open_or_create, proc_fd_path, Leaf};
use super::{RootfsConfig, RootfsError};
use crate::cgroups::V1Hierarchy;

fn error(destination: &Path, what: &'static str, source: Errno) -> RootfsError {
    RootfsError::Mount { destination: destination.display().to_string(), what, source }
}

pub fn mount_cgroups(root: &OwnedFd, destination: &Path, parsed: &ParsedOptions, config: &RootfsConfig) -> Result<(), RootfsError> {
    let flags = (parsed.flags - MsFlags::MS_BIND - MsFlags::MS_REC - MsFlags::MS_REMOUNT) | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let namespaced = config.in_cgroup_namespace;
    let read_here;
    let hierarchies: &[V1Hierarchy] = match config.cgroup_hierarchies.get() {
        Some(known) => known,
        None => {
            read_here = v1_hierarchies();
            &read_here
        }
    };
    if hierarchies.is_empty() {
        return mount_unified(root, destination, flags, namespaced);
    }
    let target = open_or_create(root, destination, Leaf::Directory)?;
    let writable = flags - MsFlags::MS_RDONLY;
    mount(Some("tmpfs"), proc_fd_path(&target).as_c_str(), Some("tmpfs"), writable, Some("mode=755"))
        .map_err(|e| error(destination, "mounting the cgroup tmpfs", e))?;
    // The tmpfs is new and empty, and nothing of the container runs yet: its entries
    // are made and opened by name, without resolving each through the rootfs again.
    let tmpfs = open_in_root(root, destination, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
        .map_err(|e| error(destination, "opening the cgroup tmpfs", e))?;
    // In a cgroup namespace the hierarchies are mounted afresh, rooted at the
    // container's own cgroups; otherwise those are bound, found in /proc/self/cgroup.
    let own = if namespaced { Vec::new() } else { own_cgroup_paths() };
    for hierarchy in hierarchies {
        mount_hierarchy(&tmpfs, destination, hierarchy, &own, flags, namespaced)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let path = proc_fd_path(&tmpfs);
        mount(None::<&str>, path.as_c_str(), None::<&str>, MsFlags::MS_REMOUNT | flags, Some("mode=755"))
            .map_err(|e| error(destination, "remounting the cgroup tmpfs read-only", e))?;
    }
    Ok(())
}

/// A new directory `name` in `parent`, opened (O_PATH) as a mount point.
fn make_mount_point(parent: &OwnedFd, name: &CStr, destination: &Path) -> Result<OwnedFd, RootfsError> {
    if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
        return Err(error(destination, "creating the mount point", Errno::last()));
    }
    open_entry(parent, name, destination)
}

/// `name` in `parent`, not following a symlink; after a mount there, the mount's root.
fn open_entry(parent: &OwnedFd, name: &CStr, destination: &Path) -> Result<OwnedFd, RootfsError> {
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(error(destination, "opening the mount point", Errno::last()));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mount_unified(root: &OwnedFd, destination: &Path, flags: MsFlags, namespaced: bool) -> Result<(), RootfsError> {
    let target = open_or_create(root, destination, Leaf::Directory)?;
    let path = proc_fd_path(&target);
    if namespaced {
        return mount(Some("cgroup2"), path.as_c_str(), Some("cgroup2"), flags, None::<&str>)
            .map_err(|e| error(destination, "mounting cgroup2", e));
    }
    let own = own_cgroup_paths().into_iter().find(|(c, _)| c.is_empty()).map(|(_, p)| p).unwrap_or_default();
    let source = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'));
    bind_with_flags(destination, &path, &source, flags, || reopen(root, destination))
}

fn mount_hierarchy(
    tmpfs: &OwnedFd,
    destination: &Path,
    hierarchy: &V1Hierarchy,
    own: &[(String, String)],
    flags: MsFlags,
    namespaced: bool,
) -> Result<(), RootfsError> {
    let Some(name) = hierarchy.mount_point.file_name() else { return Ok(()) };
    let sub = destination.join(name);
    let c_name = CString::new(name.as_encoded_bytes()).map_err(|_| error(&sub, "naming the mount point", Errno::EINVAL))?;
    let target = make_mount_point(tmpfs, &c_name, &sub)?;
    let path = proc_fd_path(&target);
    if namespaced {
        return mount(Some("cgroup"), path.as_c_str(), Some("cgroup"), flags, Some(hierarchy.controllers.as_str()))
            .map_err(|e| error(&sub, "mounting a cgroup hierarchy", e));
    }
    let own_path = own.iter().find(|(c, _)| *c == hierarchy.controllers).map(|(_, p)| p.as_str()).unwrap_or("/");
    let source = hierarchy.mount_point.join(own_path.trim_start_matches('/'));
    bind_with_flags(&sub, &path, &source, flags, || open_entry(tmpfs, &c_name, &sub))
}

/// Binds `source` on `target`, then remounts the bind (reached through `reopen`) with
/// `flags`.
fn bind_with_flags(
    destination: &Path,
    target: &CStr,
    source: &Path,
    flags: MsFlags,
    reopen: impl FnOnce() -> Result<OwnedFd, RootfsError>,
) -> Result<(), RootfsError> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| error(destination, "binding the container's cgroup", e))?;
    let mounted = reopen()?;
    remount_bind(&proc_fd_path(&mounted), flags, MsFlags::empty())
        .map_err(|e| error(destination, "remounting the cgroup bind", e))
}

/// The host's cgroup v1 hierarchies under /sys/fs/cgroup, from mountinfo.
fn v1_hierarchies() -> Vec<V1Hierarchy> {
    let mountinfo = crate::procfs::read_to_string(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    mountinfo.lines().filter_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mut fs = after.split(' ');
        if fs.next()? != "cgroup" {
            return None;
        }
        let mount_point = PathBuf::from(before.split(' ').nth(4)?);
        if !mount_point.starts_with("/sys/fs/cgroup") {
            return None;
        }
        let super_options = fs.nth(1)?;
        let controllers: Vec<&str> = super_options.split(',')
            .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent") && *o != "clone_children" && *o != "xattr")
            .collect();
        Some(V1Hierarchy { mount_point, controllers: controllers.join(",") })
    }).collect()
}

/// (controllers, path) of the calling process from /proc/self/cgroup; "" is cgroup v2.
fn own_cgroup_paths() -> Vec<(String, String)> {
    let text = crate::procfs::read_to_string(Path::new("/proc/self/cgroup")).unwrap_or_default();
    text.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((controllers.to_string(), path.to_string()))
    }).collect()
}
