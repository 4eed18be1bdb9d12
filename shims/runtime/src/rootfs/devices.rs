//! /dev inside the container: the default device nodes, the spec's devices, the
//! standard symlinks and /dev/ptmx. In a new user namespace, where mknod is refused,
//! each node is a bind mount of the host's.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use super::paths::{open_or_create, proc_fd_path, reopen_directory, Leaf};
use super::{RootfsConfig, RootfsError};

/// (name, major, minor) of the devices every container gets.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

const SYMLINKS: [(&str, &str); 4] =
    [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")];

fn device_error(path: &Path, source: Errno) -> RootfsError {
    RootfsError::Device { path: path.display().to_string(), source }
}

pub fn populate_dev(root: &OwnedFd, config: &RootfsConfig, mounts: &[Mount]) -> Result<(), RootfsError> {
    let linux = config.spec.linux().as_ref();
    let spec_devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or_default();
    let mut dirs = DeviceDirs::new(root);
    if host_dev_is_bound(mounts) {
        return spec_devices.iter().try_for_each(|d| create_device(&mut dirs, d, config.in_user_namespace));
    }
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = PathBuf::from("/dev").join(name);
        if spec_devices.iter().any(|d| d.path() == &path) {
            continue;
        }
        let device = LinuxDevice::default()
            .set_path(path).clone()
            .set_typ(LinuxDeviceType::C).clone()
            .set_major(major as i64).clone()
            .set_minor(minor as i64).clone()
            .set_file_mode(Some(0o666)).clone();
        create_device(&mut dirs, &device, config.in_user_namespace)?;
    }
    for device in spec_devices {
        create_device(&mut dirs, device, config.in_user_namespace)?;
    }
    create_symlinks(&mut dirs)
}

/// The directories devices are made in, each resolved inside the rootfs once (all of
/// the defaults go in /dev).
struct DeviceDirs<'a> {
    root: &'a OwnedFd,
    last: Option<(PathBuf, OwnedFd)>,
}

impl<'a> DeviceDirs<'a> {
    fn new(root: &'a OwnedFd) -> Self {
        DeviceDirs { root, last: None }
    }

    /// A real descriptor of `parent` (inside the rootfs), created if missing.
    fn open(&mut self, parent: &Path) -> Result<&OwnedFd, RootfsError> {
        if self.last.as_ref().is_none_or(|(path, _)| path != parent) {
            let found = open_or_create(self.root, parent, Leaf::Directory)?;
            let dir = reopen_directory(&found).map_err(|e| device_error(parent, e))?;
            self.last = Some((parent.to_path_buf(), dir));
        }
        match &self.last {
            Some((_, dir)) => Ok(dir),
            None => Err(device_error(parent, Errno::ENOENT)),
        }
    }
}

/// runc does not populate a /dev that is a bind mount of the host's.
fn host_dev_is_bound(mounts: &[Mount]) -> bool {
    mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && m.options().as_ref().is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
    })
}

fn create_device(dirs: &mut DeviceDirs, device: &LinuxDevice, in_user_namespace: bool) -> Result<(), RootfsError> {
    let path = device.path();
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(device_error(path, Errno::EINVAL)),
    };
    if in_user_namespace {
        open_or_create(dirs.root, parent, Leaf::Directory)?;
        return bind_host_device(dirs.root, path);
    }
    let dir = dirs.open(parent)?;
    let c_name = CString::new(name.as_encoded_bytes()).map_err(|_| device_error(path, Errno::EINVAL))?;
    let kind = match device.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let mode = Mode::from_bits_truncate(device.file_mode().unwrap_or(0o666));
    let dev = makedev(device.major() as u64, device.minor() as u64);
    let make = || nix::sys::stat::mknodat(Some(dir.as_raw_fd()), c_name.as_c_str(), kind, mode, dev);
    match make() {
        // Whatever the image has there gives way to the device.
        Err(Errno::EEXIST) => {
            unsafe { libc::unlinkat(dir.as_raw_fd(), c_name.as_ptr(), 0) };
            make()
        }
        other => other,
    }
    .map_err(|e| device_error(path, e))?;
    let (uid, gid) = (device.uid().unwrap_or(0), device.gid().unwrap_or(0));
    nix::unistd::fchownat(Some(dir.as_raw_fd()), c_name.as_c_str(), Some(uid.into()), Some(gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| device_error(path, e))
}

fn bind_host_device(root: &OwnedFd, path: &Path) -> Result<(), RootfsError> {
    let target = open_or_create(root, path, Leaf::File)?;
    mount(Some(path), proc_fd_path(&target).as_c_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| device_error(path, e))
}

fn create_symlinks(dirs: &mut DeviceDirs) -> Result<(), RootfsError> {
    let dir = dirs.open(Path::new("/dev"))?;
    let mut links: Vec<(&str, &str)> = SYMLINKS.to_vec();
    links.push(("ptmx", "pts/ptmx"));
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        let c_name = CString::new(name).unwrap_or_default();
        if name == "ptmx" {
            unsafe { libc::unlinkat(dir.as_raw_fd(), c_name.as_ptr(), 0) };
        }
        match nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), c_name.as_c_str()) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(device_error(&Path::new("/dev").join(name), e)),
        }
    }
    Ok(())
}
