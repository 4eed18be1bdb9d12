//! The container's root filesystem, built by its init inside its new mount namespace:
//! mounts, /dev, the switch into the new root, then masked and read-only paths.
//!
//! Until the switch, every destination is resolved inside the rootfs with
//! `openat2(RESOLVE_IN_ROOT)` and mounted through its `/proc/self/fd` path, so that no
//! symlink in the image, nor one swapped in meanwhile, can send a mount to the host.

mod cgroupfs;
mod devices;
pub mod idmap;
mod mounts;
mod options;
mod paths;
mod pivot;
mod protect;

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{Mount, Spec};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("mount {destination}: {what}: {source}")]
    Mount { destination: String, what: &'static str, source: nix::Error },
    #[error("mount {destination}: {problem}")]
    Invalid { destination: String, problem: String },
    #[error("{path}: {what}: {source}")]
    Path { path: String, what: &'static str, source: nix::Error },
    #[error("device {path}: {source}")]
    Device { path: String, source: nix::Error },
    #[error("waiting to be placed in the cgroup: {0}")]
    Waiting(String),
    #[error("linux.rootfsPropagation: unknown value {0:?}")]
    Propagation(String),
    #[error("switching to the new root {rootfs}: {what}: {source}")]
    Pivot { rootfs: PathBuf, what: &'static str, source: nix::Error },
}

pub struct RootfsConfig<'a> {
    pub spec: &'a Spec,
    /// Absolute host path of the rootfs.
    pub rootfs: PathBuf,
    pub no_pivot: bool,
    /// A new user namespace: device nodes are bind-mounted from the host.
    pub in_user_namespace: bool,
    pub in_cgroup_namespace: bool,
    /// The host's cgroup v1 hierarchies, when the runtime said (with the placement);
    /// otherwise `cgroup` mounts read them from mountinfo.
    pub cgroup_hierarchies: std::cell::OnceCell<Vec<crate::cgroups::V1Hierarchy>>,
    /// The idmapped trees the runtime made for `idmap`/`ridmap` mounts.
    pub idmapped: idmap::IdmappedTrees,
}

/// Before createContainer hooks: propagation, the rootfs bind, every spec mount, /dev.
/// The init's current directory is the bundle (relative bind sources start there).
/// `await_cgroup` is called before the first `cgroup` mount: the init must be in its
/// cgroup (and cgroup namespace) by then.
pub fn prepare(config: &RootfsConfig, await_cgroup: &mut dyn FnMut() -> Result<(), RootfsError>) -> Result<(), RootfsError> {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if has_mount_namespace(config.spec) {
        set_up_propagation(config)?;
    }
    match config.idmapped.rootfs() {
        Some(tree) => mounts::attach_idmapped_rootfs(tree, &config.rootfs)?,
        None => mounts::bind_rootfs_onto_itself(&config.rootfs)?,
    }
    let root = paths::open_root(&config.rootfs)?;
    crate::mark!("rootfs bound");
    mount_everything(&root, config, await_cgroup)
}

/// Whether the container has a mount namespace of its own (new or joined). Without
/// one it runs in the caller's, as runc and crun do: its mounts are made there, under
/// the rootfs, it enters the rootfs with chroot, and `delete` unmounts them.
pub fn has_mount_namespace(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    namespaces.into_iter().flatten().any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
}

/// Unmounts (detached) what a container without a mount namespace left in the
/// caller's mount namespace under `rootfs`.
pub fn unmount_container_mounts(rootfs: &Path) -> Result<(), RootfsError> {
    mounts::unmount_below(rootfs)
}

/// In the container's own mount namespace: the propagation of the whole tree.
fn set_up_propagation(config: &RootfsConfig) -> Result<(), RootfsError> {
    // An unbindable tree could not be bind-mounted from: that one is applied to the new
    // root only, in `finish`.
    let propagation = match root_propagation(config.spec)? {
        Some(flags) if !flags.contains(MsFlags::MS_UNBINDABLE) => flags,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mounts::change_propagation("/", propagation)?;
    if propagation.contains(MsFlags::MS_SHARED) {
        // The host's mounts stay peers of the container's copies, so that mounts made
        // under a shared bind mount propagate both ways; only the mount holding the
        // rootfs is made private, as pivot_root refuses a shared parent.
        mounts::make_holding_mount_private(&config.rootfs)?;
    }
    Ok(())
}

/// Every spec mount (the deferrable cgroup ones last) and /dev.
fn mount_everything(
    root: &std::os::fd::OwnedFd,
    config: &RootfsConfig,
    await_cgroup: &mut dyn FnMut() -> Result<(), RootfsError>,
) -> Result<(), RootfsError> {
    let spec_mounts = config.spec.mounts().as_deref().unwrap_or_default();
    let deferred = deferrable_cgroup_mounts(spec_mounts);
    for (index, mount) in spec_mounts.iter().enumerate() {
        if deferred.contains(&index) {
            continue;
        }
        if is_cgroup(mount) {
            await_cgroup()?;
        }
        mounts::mount_one(root, mount, config, config.idmapped.get(index))?;
    }
    devices::populate_dev(root, config, spec_mounts)?;
    crate::mark!("dev populated");
    for index in deferred {
        await_cgroup()?;
        mounts::mount_one(root, &spec_mounts[index], config, config.idmapped.get(index))?;
    }
    Ok(())
}

fn is_cgroup(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("cgroup")
}

/// The `cgroup` mounts that can wait until every other mount and /dev are made: the init
/// is moved into its cgroup meanwhile. One whose destination contains, or lies under,
/// that of a later mount or /dev keeps its place in the spec's order.
fn deferrable_cgroup_mounts(spec_mounts: &[Mount]) -> Vec<usize> {
    let overlaps = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
    spec_mounts
        .iter()
        .enumerate()
        .filter(|(index, mount)| {
            let destination = mount.destination().as_path();
            is_cgroup(mount)
                && !overlaps(destination, Path::new("/dev"))
                && !spec_mounts[index + 1..].iter().any(|later| overlaps(destination, later.destination()))
        })
        .map(|(index, _)| index)
        .collect()
}

/// After createContainer hooks: pivot_root (or move + chroot) into the rootfs.
pub fn enter(config: &RootfsConfig) -> Result<(), RootfsError> {
    if !has_mount_namespace(config.spec) {
        return pivot::chroot_only(&config.rootfs);
    }
    pivot::switch_root(&config.rootfs, config.no_pivot)
}

/// Inside the new root: masked paths, read-only paths, read-only root, propagation.
pub fn finish(config: &RootfsConfig) -> Result<(), RootfsError> {
    let linux = config.spec.linux().as_ref();
    let mut masker = protect::Masker::default();
    for path in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        masker.mask(path)?;
    }
    for path in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        protect::make_read_only(path)?;
    }
    if config.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        protect::remount_read_only("/")?;
    }
    if let Some(flags) = root_propagation(config.spec)?.filter(|_| has_mount_namespace(config.spec)) {
        mounts::change_propagation("/", flags)?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    Ok(())
}

fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>, RootfsError> {
    let Some(value) = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_ref()) else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    options::propagation_flag(value).map(Some).ok_or_else(|| RootfsError::Propagation(value.clone()))
}
