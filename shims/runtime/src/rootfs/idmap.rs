//! Idmapped bind mounts (the `idmap` and `ridmap` options of runtime-spec 1.1), made by
//! the runtime before the init is cloned. The kernel lets only a holder of
//! CAP_SYS_ADMIN in the user namespace of the source's filesystem (the host's) idmap a
//! mount, which an init in a new user namespace is not. Each mount is a detached copy
//! of its source (`open_tree`), given a user namespace holding the mount's
//! `uidMappings`/`gidMappings` (or, without them, the container's) through
//! `mount_setattr(MOUNT_ATTR_IDMAP)`; the init inherits the descriptors and attaches
//! each tree at its destination (`move_mount`).
//!
//! The root filesystem is idmapped the same way, with the container's mappings, when
//! the annotation [`ROOTFS_ANNOTATION`] is "true": for a rootfs directory whose files
//! the host's root owns, seen by a container in a user namespace. The kernel cannot
//! idmap an overlayfs mount itself: an overlay rootfs is made of idmapped layers by
//! whoever mounts it.
//!
//! A mapping `{containerID: c, hostID: h, size: n}` shows a file owned by `c + i` on
//! disk as owned by `h + i`: with the container's own mappings, files owned by root on
//! the host are owned by root in the container.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};

use super::options::{self, ParsedOptions};
use super::RootfsError;

/// Asks for an idmapped root filesystem ("true").
pub const ROOTFS_ANNOTATION: &str = "io.github.berth.rootfs.idmap";

/// The detached idmapped trees of a container: its mounts', by index in
/// `spec.mounts`, and the root filesystem's.
#[derive(Default)]
pub struct IdmappedTrees {
    mounts: HashMap<usize, OwnedFd>,
    rootfs: Option<OwnedFd>,
}

impl IdmappedTrees {
    pub fn get(&self, index: usize) -> Option<&OwnedFd> {
        self.mounts.get(&index)
    }

    pub fn rootfs(&self) -> Option<&OwnedFd> {
        self.rootfs.as_ref()
    }
}

fn rootfs_requested(spec: &Spec) -> bool {
    spec.annotations().as_ref().and_then(|a| a.get(ROOTFS_ANNOTATION)).is_some_and(|v| v == "true")
}

fn invalid(mount: &Mount, problem: impl Into<String>) -> RootfsError {
    RootfsError::Invalid { destination: mount.destination().display().to_string(), problem: problem.into() }
}

fn failed(mount: &Mount, what: &'static str, source: Errno) -> RootfsError {
    RootfsError::Mount { destination: mount.destination().display().to_string(), what, source }
}

/// Whether any mount asks for an idmap.
pub fn any_requested(spec: &Spec) -> bool {
    rootfs_requested(spec) || spec.mounts().iter().flatten().any(|m| parse(m).idmap.is_some())
}

fn parse(mount: &Mount) -> ParsedOptions {
    options::parse(mount.options().as_deref().unwrap_or_default())
}

/// Makes every idmapped tree the spec asks for; relative sources start at `bundle`.
pub fn prepare(spec: &Spec, bundle: &Path, rootfs: &Path) -> Result<IdmappedTrees, RootfsError> {
    let mut trees = IdmappedTrees::default();
    let mut namespaces = UserNamespaces::default();
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        let parsed = parse(mount);
        let Some(recursive) = parsed.idmap else { continue };
        let (uid, gid) = mappings_for(spec, mount)?;
        let userns = namespaces.with(&uid, &gid).map_err(|e| failed(mount, "making the idmap's user namespace", e))?;
        trees.mounts.insert(index, idmapped_tree(mount, bundle, &parsed, userns, recursive)?);
    }
    if rootfs_requested(spec) {
        trees.rootfs = Some(idmapped_rootfs(spec, rootfs, &mut namespaces)?);
    }
    Ok(trees)
}

/// The user namespaces made so far, one per distinct pair of mappings.
#[derive(Default)]
struct UserNamespaces(Vec<(String, OwnedFd)>);

impl UserNamespaces {
    fn with(&mut self, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<&OwnedFd, Errno> {
        let key = format!("{uid:?}/{gid:?}");
        let position = match self.0.iter().position(|(k, _)| *k == key) {
            Some(position) => position,
            None => {
                self.0.push((key, user_namespace_with(uid, gid)?));
                self.0.len() - 1
            }
        };
        Ok(&self.0[position].1)
    }
}

/// The whole tree at the rootfs, idmapped with the container's mappings.
fn idmapped_rootfs(spec: &Spec, rootfs: &Path, namespaces: &mut UserNamespaces) -> Result<OwnedFd, RootfsError> {
    let problem = |what: &str| RootfsError::Invalid { destination: "/".into(), problem: format!("{ROOTFS_ANNOTATION}: {what}") };
    let fail = |what, source| RootfsError::Mount { destination: "/".into(), what, source };
    let linux = spec.linux().as_ref();
    let (Some(uid), Some(gid)) = (linux.and_then(|l| l.uid_mappings().as_ref()), linux.and_then(|l| l.gid_mappings().as_ref())) else {
        return Err(problem("needs a user namespace with uidMappings and gidMappings"));
    };
    let path = CString::new(rootfs.as_os_str().as_bytes()).map_err(|_| problem("the rootfs path contains a NUL byte"))?;
    let userns = namespaces.with(uid, gid).map_err(|e| fail("making the idmap's user namespace", e))?;
    let tree = crate::mount_api::clone_tree(&path, true, true).map_err(|e| fail("open_tree of the rootfs", e))?;
    crate::mount_api::set_idmap(&tree, userns, true).map_err(|e| match e {
        Errno::EINVAL => problem("the filesystem at the rootfs cannot be idmapped (overlayfs cannot: idmap its layers before mounting it)"),
        e => fail("idmapping the rootfs (mount_setattr)", e),
    })?;
    Ok(tree)
}

/// The mount's own mappings, or else the container's user namespace's.
fn mappings_for(spec: &Spec, mount: &Mount) -> Result<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>), RootfsError> {
    let linux = spec.linux().as_ref();
    let own = (mount.uid_mappings().clone(), mount.gid_mappings().clone());
    let container = (linux.and_then(|l| l.uid_mappings().clone()), linux.and_then(|l| l.gid_mappings().clone()));
    let non_empty = |maps: Option<Vec<LinuxIdMapping>>| maps.filter(|m| !m.is_empty());
    match (non_empty(own.0), non_empty(own.1)) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        (None, None) => match (non_empty(container.0), non_empty(container.1)) {
            (Some(uid), Some(gid)) => Ok((uid, gid)),
            _ => Err(invalid(mount, "idmap needs uidMappings and gidMappings, on the mount or for a user namespace")),
        },
        _ => Err(invalid(mount, "uidMappings and gidMappings go together")),
    }
}

fn idmapped_tree(mount: &Mount, bundle: &Path, parsed: &ParsedOptions, userns: &OwnedFd, recursive: bool) -> Result<OwnedFd, RootfsError> {
    if !parsed.is_bind() && mount.typ().as_deref() != Some("bind") {
        return Err(invalid(mount, "idmap is supported on bind mounts only"));
    }
    let source = mount.source().as_deref().ok_or_else(|| invalid(mount, "a bind mount needs a source"))?;
    let source = bundle.join(source);
    let source = CString::new(source.as_os_str().as_bytes()).map_err(|_| invalid(mount, "source contains a NUL byte"))?;
    let whole_tree = recursive || parsed.flags.contains(nix::mount::MsFlags::MS_REC);
    let tree = crate::mount_api::clone_tree(&source, whole_tree, true).map_err(|e| failed(mount, "open_tree of the source", e))?;
    crate::mount_api::set_idmap(&tree, userns, recursive).map_err(|e| failed(mount, "idmapping (mount_setattr)", e))?;
    Ok(tree)
}

/// A user namespace with these mappings: a child creates it and waits while the
/// runtime writes its maps and opens it, then exits.
pub fn user_namespace_with(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd, Errno> {
    let (ready_read, ready_write) = nix::unistd::pipe()?;
    let (hold_read, hold_write) = nix::unistd::pipe()?;
    match unsafe { fork() }? {
        ForkResult::Child => {
            // Only async-signal-safe calls: the runtime may have other threads. The
            // child's own write end goes, so that the runtime's closing it ends the read.
            drop((ready_read, hold_write));
            // Gone with the runtime, should it die before closing its end.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let made: &[u8] = if nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok() { b"1" } else { b"0" };
            let _ = nix::unistd::write(&ready_write, made);
            let _ = nix::unistd::read(hold_read.as_raw_fd(), &mut [0u8; 1]);
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop((ready_write, hold_read));
            let opened = open_when_made(child.as_raw(), &ready_read, uid, gid);
            drop(hold_write);
            let _ = nix::sys::wait::waitpid(child, None);
            opened
        }
    }
}

fn open_when_made(pid: i32, ready: &OwnedFd, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd, Errno> {
    let mut byte = [0u8; 1];
    if nix::unistd::read(ready.as_raw_fd(), &mut byte)? != 1 || byte[0] != b'1' {
        return Err(Errno::EPERM);
    }
    let io_errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    std::fs::write(format!("/proc/{pid}/uid_map"), map_text(uid)).map_err(io_errno)?;
    std::fs::write(format!("/proc/{pid}/gid_map"), map_text(gid)).map_err(io_errno)?;
    let file = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(io_errno)?;
    Ok(file.into())
}

/// The text of a uid_map or gid_map file.
pub fn map_text(mappings: &[LinuxIdMapping]) -> String {
    mappings.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}
