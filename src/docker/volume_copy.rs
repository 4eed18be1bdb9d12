//! Fills a new, empty volume with what the image holds at the path it is mounted on, as
//! Docker does on a volume's first use. The image's layers are mounted read-only in a
//! mount namespace private to one short-lived thread (`unshare(CLONE_FS|CLONE_NEWNS)`),
//! so that mount never shows on the host and goes away with the thread, even if berthd
//! dies mid-copy. The path is resolved inside the image (`RESOLVE_IN_ROOT`), and the copy
//! works on descriptors and never follows a symlink.
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{fchmod, fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

/// Deepest directory nesting copied; deeper trees are refused rather than overflow.
const MAX_DEPTH: usize = 128;

/// Copies the image's `image_path` (the container path of the volume) from `lowerdirs`
/// (top first) into `data`. `scratch` is an empty directory used as the mount point.
/// Nothing happens when the image has no directory there.
pub async fn populate(lowerdirs: Vec<PathBuf>, scratch: PathBuf, image_path: String, data: PathBuf) -> io::Result<()> {
    let (done, result) = tokio::sync::oneshot::channel();
    let scratch_dir = scratch.clone();
    std::fs::create_dir_all(&scratch)?;
    // A thread of its own: its private namespace must not outlive this copy, as it
    // would on a pooled blocking thread.
    std::thread::Builder::new().name("volume-copy".into()).spawn(move || {
        let _ = done.send(copy_in_private_namespace(&lowerdirs, &scratch, &image_path, &data));
    })?;
    let outcome = result.await.unwrap_or_else(|_| Err(io::Error::other("the volume copy thread died")));
    let _ = std::fs::remove_dir(&scratch_dir);
    outcome
}

fn copy_in_private_namespace(lowerdirs: &[PathBuf], scratch: &Path, image_path: &str, data: &Path) -> io::Result<()> {
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    crate::snapshot::mount_layers_read_only(lowerdirs, scratch)?;
    let image_root = open_directory(scratch)?;
    let source = match open_in_root(&image_root, image_path) {
        Ok(source) => source,
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => return Ok(()),
        Err(error) => return Err(error),
    };
    let destination = open_directory(data)?;
    copy_tree(&source, &destination, 0)?;
    copy_ownership_and_mode(&source, &destination)
}

/// The layers, read-only: an overlay of them, or a bind mount of a single one.
fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `path` inside the image, symlinks resolved as the container would see them.
fn open_in_root(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    let path = CString::new(path).map_err(io::Error::other)?;
    let flags = libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC;
    let fd = crate::snapshot::unpack::openat2(root.as_raw_fd(), &path, flags, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_child(dir: &OwnedFd, name: &CStr, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
    let fd = openat(Some(dir.as_raw_fd()), name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, mode)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn entry_names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let duplicate = dir.try_clone()?;
    let mut listing = nix::dir::Dir::from_fd(duplicate.as_raw_fd())?;
    std::mem::forget(duplicate); // now owned by `listing`
    let mut names = Vec::new();
    for entry in listing.iter() {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

fn copy_tree(source: &OwnedFd, destination: &OwnedFd, depth: usize) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!("the image's directory tree is deeper than {MAX_DEPTH}")));
    }
    for name in entry_names(source)? {
        copy_entry(source, destination, &name, depth)?;
    }
    Ok(())
}

fn copy_entry(source: &OwnedFd, destination: &OwnedFd, name: &CStr, depth: usize) -> io::Result<()> {
    let stat = fstatat(Some(source.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT);
    let mode = Mode::from_bits_truncate(stat.st_mode & 0o7777);
    let owner = (Some(Uid::from_raw(stat.st_uid)), Some(Gid::from_raw(stat.st_gid)));
    match kind {
        SFlag::S_IFDIR => {
            mkdirat(Some(destination.as_raw_fd()), name, Mode::from_bits_truncate(0o700))?;
            let from = open_child(source, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())?;
            let to = open_child(destination, name, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())?;
            copy_tree(&from, &to, depth + 1)?;
            copy_ownership_and_mode(&from, &to)
        }
        SFlag::S_IFREG => {
            let from = open_child(source, name, OFlag::O_RDONLY, Mode::empty())?;
            let to = open_child(destination, name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, Mode::from_bits_truncate(0o600))?;
            io::copy(&mut File::from(from.try_clone()?), &mut File::from(to.try_clone()?))?;
            copy_ownership_and_mode(&from, &to)
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(Some(source.as_raw_fd()), name)?;
            symlinkat(target.as_os_str(), Some(destination.as_raw_fd()), name)?;
            Ok(fchownat(Some(destination.as_raw_fd()), name, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)?)
        }
        _ => {
            mknodat(Some(destination.as_raw_fd()), name, kind, mode, stat.st_rdev)?;
            fchownat(Some(destination.as_raw_fd()), name, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            Ok(fchmodat(Some(destination.as_raw_fd()), name, mode, FchmodatFlags::FollowSymlink)?)
        }
    }
}

/// Owner first, then the mode: `chown` clears the set-id bits.
fn copy_ownership_and_mode(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    let stat = nix::sys::stat::fstat(from.as_raw_fd())?;
    fchown(to.as_fd().as_raw_fd(), Some(Uid::from_raw(stat.st_uid)), Some(Gid::from_raw(stat.st_gid)))?;
    Ok(fchmod(to.as_raw_fd(), Mode::from_bits_truncate(stat.st_mode & 0o7777))?)
}
