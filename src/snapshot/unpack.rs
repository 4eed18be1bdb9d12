//! Applies one layer's tar stream to an empty overlay layer directory, safely: every
//! path is resolved component by component from the layer root with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so nothing the tar says can write outside
//! the directory. Entries with `..` or absolute paths, parents that are symlinks, and
//! links that lead out of the layer are refused. OCI whiteouts become overlayfs
//! whiteouts (a 0/0 character device) and opaque markers become
//! `trusted.overlay.opaque=y`; ownership, modes, times, xattrs, hard links, symlinks and
//! device nodes are kept.
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("hostile layer entry {path:?}: {reason}")]
    Hostile { path: String, reason: &'static str },
    #[error("reading the layer stream: {0}")]
    Stream(#[source] io::Error),
    #[error("writing {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What was unpacked.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Applies the tar stream `reader` to the directory `root` and returns the reader
/// positioned after the end-of-archive marker (so the caller can drain and verify it).
pub fn unpack_layer<R: Read>(reader: R, root: &Path) -> Result<(UnpackStats, R), UnpackError> {
    let root_fd = open_path(libc::AT_FDCWD, root.as_os_str(), libc::O_DIRECTORY, 0)
        .map_err(|source| UnpackError::Io { path: root.display().to_string(), source })?;
    let mut layer = Layer { root: root_fd, cached_parent: None, dir_times: Vec::new(), stats: UnpackStats::default() };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Stream)? {
        let mut entry = entry.map_err(UnpackError::Stream)?;
        layer.apply(&mut entry)?;
    }
    layer.set_directory_times()?;
    Ok((layer.stats, archive.into_inner()))
}

/// A tar path split into checked components.
struct EntryPath {
    parent: Vec<CString>,
    name: CString,
    display: String,
}

fn hostile(display: &str, reason: &'static str) -> UnpackError {
    UnpackError::Hostile { path: display.to_string(), reason }
}

/// Splits a path from the tar into components, refusing `..` and absolute paths.
fn split_path(path: &Path) -> Result<Option<EntryPath>, UnpackError> {
    let display = path.display().to_string();
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(cstring(part, &display)?),
            Component::CurDir => {}
            Component::ParentDir => return Err(hostile(&display, "path contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(hostile(&display, "absolute path")),
        }
    }
    let Some(name) = parts.pop() else { return Ok(None) };
    Ok(Some(EntryPath { parent: parts, name, display }))
}

fn cstring(part: &OsStr, display: &str) -> Result<CString, UnpackError> {
    CString::new(part.as_bytes()).map_err(|_| hostile(display, "NUL byte in path"))
}

/// Whether a relative symlink target, read from the link's directory at `depth`
/// components below the root, climbs above the root.
fn symlink_escapes(target: &Path, depth: usize) -> bool {
    if target.is_absolute() {
        return false; // resolved against the container's root, never the host's
    }
    let mut level = depth as isize;
    for component in target.components() {
        match component {
            Component::ParentDir => level -= 1,
            Component::Normal(_) => level += 1,
            _ => {}
        }
        if level < 0 {
            return true;
        }
    }
    false
}

struct Layer {
    root: OwnedFd,
    cached_parent: Option<(Vec<CString>, OwnedFd)>,
    dir_times: Vec<(Vec<CString>, CString, libc::timespec)>,
    stats: UnpackStats,
}

/// Ownership, mode, time and xattrs of an entry.
struct Attributes {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: libc::timespec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Layer {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), UnpackError> {
        let path = entry.path().map_err(UnpackError::Stream)?.into_owned();
        let Some(path) = split_path(&path)? else { return Ok(()) };
        let attributes = attributes(entry)?;
        self.stats.entries += 1;
        let name = path.name.as_bytes();
        if name == OPAQUE_MARKER.as_bytes() {
            let parent = self.parent_dir(&path)?;
            return set_xattr_on_path_fd(&parent, OPAQUE_XATTR, b"y").map_err(io_at(&path.display));
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&path, hidden);
        }
        let parent = self.parent_dir(&path)?;
        let kind = entry.header().entry_type();
        remove_existing(&parent, &path, kind.is_dir())?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.regular_file(entry, &parent, &path, &attributes)
            }
            tar::EntryType::Directory => self.directory(&parent, &path, &attributes),
            tar::EntryType::Symlink => self.symlink(entry, &parent, &path, &attributes),
            tar::EntryType::Link => self.hardlink(entry, &parent, &path),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                device_node(entry.header(), kind, &parent, &path, &attributes)
            }
            _ => Err(hostile(&path.display, "unsupported tar entry type")),
        }
    }

    /// The directory holding `path`, made (0755, root) where the tar did not list it.
    fn parent_dir(&mut self, path: &EntryPath) -> Result<OwnedFd, UnpackError> {
        if let Some((cached, fd)) = &self.cached_parent {
            if *cached == path.parent {
                return fd.try_clone().map_err(io_at(&path.display));
            }
        }
        let fd = self.walk(&path.parent, true, &path.display)?;
        self.cached_parent = Some((path.parent.clone(), fd.try_clone().map_err(io_at(&path.display))?));
        Ok(fd)
    }

    /// Opens the directory at `components` below the root, one component at a time,
    /// never following a symlink; creates missing directories when `create`.
    fn walk(&self, components: &[CString], create: bool, display: &str) -> Result<OwnedFd, UnpackError> {
        let mut current = self.root.try_clone().map_err(io_at(display))?;
        for component in components {
            if create {
                let made = unsafe { libc::mkdirat(current.as_raw_fd(), component.as_ptr(), 0o755) };
                if made != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io_at(display)(io::Error::last_os_error()));
                }
            }
            current = open_dir_beneath(&current, component).map_err(|error| match error.raw_os_error() {
                Some(libc::ELOOP | libc::EXDEV | libc::ENOTDIR) => {
                    hostile(display, "a parent is a symlink or not a directory")
                }
                _ => io_at(display)(error),
            })?;
        }
        Ok(current)
    }

    fn whiteout(&mut self, path: &EntryPath, hidden: &[u8]) -> Result<(), UnpackError> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return Err(hostile(&path.display, "malformed whiteout"));
        }
        let parent = self.parent_dir(path)?;
        let hidden = CString::new(hidden).map_err(|_| hostile(&path.display, "NUL byte in path"))?;
        let hidden_path = EntryPath { parent: path.parent.clone(), name: hidden, display: path.display.clone() };
        remove_existing(&parent, &hidden_path, false)?;
        let made = unsafe { libc::mknodat(parent.as_raw_fd(), hidden_path.name.as_ptr(), libc::S_IFCHR, 0) };
        check(made).map_err(io_at(&path.display))
    }

    fn regular_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        parent: &OwnedFd,
        path: &EntryPath,
        attributes: &Attributes,
    ) -> Result<(), UnpackError> {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = unsafe { libc::openat(parent.as_raw_fd(), path.name.as_ptr(), flags, 0o600) };
        let mut file = unsafe { File::from_raw_fd(check_fd(fd).map_err(io_at(&path.display))?) };
        self.stats.bytes += copy_entry(entry, &mut file, &path.display)?;
        apply_attributes(file.as_raw_fd(), attributes).map_err(io_at(&path.display))
    }

    fn directory(&mut self, parent: &OwnedFd, path: &EntryPath, attributes: &Attributes) -> Result<(), UnpackError> {
        let made = unsafe { libc::mkdirat(parent.as_raw_fd(), path.name.as_ptr(), 0o700) };
        if made != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(io_at(&path.display)(io::Error::last_os_error()));
        }
        let dir = open_beneath(parent, &path.name).map_err(io_at(&path.display))?;
        let dir = reopen_readable(&dir, libc::O_DIRECTORY).map_err(io_at(&path.display))?;
        apply_attributes(dir.as_raw_fd(), attributes).map_err(io_at(&path.display))?;
        self.dir_times.push((path.parent.clone(), path.name.clone(), attributes.mtime));
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
        parent: &OwnedFd,
        path: &EntryPath,
        attributes: &Attributes,
    ) -> Result<(), UnpackError> {
        let target = entry.link_name().map_err(UnpackError::Stream)?;
        let target = target.ok_or_else(|| hostile(&path.display, "symlink without a target"))?;
        if symlink_escapes(&target, path.parent.len()) {
            return Err(hostile(&path.display, "symlink leads out of the layer"));
        }
        let target = cstring(target.as_os_str(), &path.display)?;
        let made = unsafe { libc::symlinkat(target.as_ptr(), parent.as_raw_fd(), path.name.as_ptr()) };
        check(made).map_err(io_at(&path.display))?;
        let owned = unsafe {
            libc::fchownat(parent.as_raw_fd(), path.name.as_ptr(), attributes.uid, attributes.gid, libc::AT_SYMLINK_NOFOLLOW)
        };
        check(owned).map_err(io_at(&path.display))?;
        set_times_at(parent, &path.name, attributes.mtime).map_err(io_at(&path.display))
    }

    fn hardlink<R: Read>(&mut self, entry: &tar::Entry<R>, parent: &OwnedFd, path: &EntryPath) -> Result<(), UnpackError> {
        let target = entry.link_name().map_err(UnpackError::Stream)?;
        let target = target.ok_or_else(|| hostile(&path.display, "hard link without a target"))?;
        let target = split_path(&target)
            .map_err(|_| hostile(&path.display, "hard link leads out of the layer"))?
            .ok_or_else(|| hostile(&path.display, "hard link to the layer root"))?;
        let target_parent = self.walk(&target.parent, false, &path.display)?;
        let linked = unsafe {
            libc::linkat(target_parent.as_raw_fd(), target.name.as_ptr(), parent.as_raw_fd(), path.name.as_ptr(), 0)
        };
        check(linked).map_err(io_at(&path.display))
    }

    /// Directory times last, after their contents stopped changing them.
    fn set_directory_times(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dir_times);
        for (parent, name, mtime) in dirs.iter().rev() {
            let display = String::from_utf8_lossy(name.as_bytes()).into_owned();
            let parent_fd = self.walk(parent, false, &display)?;
            set_times_at(&parent_fd, name, *mtime).map_err(io_at(&display))?;
        }
        Ok(())
    }
}

fn device_node(
    header: &tar::Header,
    kind: tar::EntryType,
    parent: &OwnedFd,
    path: &EntryPath,
    attributes: &Attributes,
) -> Result<(), UnpackError> {
    let file_type = match kind {
        tar::EntryType::Char => libc::S_IFCHR,
        tar::EntryType::Block => libc::S_IFBLK,
        _ => libc::S_IFIFO,
    };
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    let device = libc::makedev(major, minor);
    let made = unsafe { libc::mknodat(parent.as_raw_fd(), path.name.as_ptr(), file_type | 0o600, device) };
    check(made).map_err(io_at(&path.display))?;
    let node = open_beneath(parent, &path.name).map_err(io_at(&path.display))?;
    let proc_path = proc_fd_path(node.as_raw_fd());
    let owned = unsafe { libc::chown(proc_path.as_ptr(), attributes.uid, attributes.gid) };
    check(owned).map_err(io_at(&path.display))?;
    let moded = unsafe { libc::chmod(proc_path.as_ptr(), attributes.mode) };
    check(moded).map_err(io_at(&path.display))?;
    set_times_at(parent, &path.name, attributes.mtime).map_err(io_at(&path.display))
}

/// Removes what an earlier entry of the same layer left at this name, keeping an
/// existing directory when the new entry is a directory too.
fn remove_existing(parent: &OwnedFd, path: &EntryPath, keep_dir: bool) -> Result<(), UnpackError> {
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::fstatat(parent.as_raw_fd(), path.name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) };
    if found != 0 {
        return Ok(());
    }
    let is_dir = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if is_dir && keep_dir {
        return Ok(());
    }
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    let removed = unsafe { libc::unlinkat(parent.as_raw_fd(), path.name.as_ptr(), flags) };
    check(removed).map_err(io_at(&path.display))
}

fn attributes<R: Read>(entry: &mut tar::Entry<R>) -> Result<Attributes, UnpackError> {
    let header = entry.header();
    let mut attributes = Attributes {
        uid: header.uid().unwrap_or(0) as u32,
        gid: header.gid().unwrap_or(0) as u32,
        mode: header.mode().unwrap_or(0o644) & 0o7777,
        mtime: libc::timespec { tv_sec: header.mtime().unwrap_or(0) as libc::time_t, tv_nsec: 0 },
        xattrs: Vec::new(),
    };
    let Some(extensions) = entry.pax_extensions().map_err(UnpackError::Stream)? else {
        return Ok(attributes);
    };
    for extension in extensions {
        let extension = extension.map_err(UnpackError::Stream)?;
        let Ok(key) = extension.key() else { continue };
        let value = extension.value_bytes();
        match key {
            "uid" => attributes.uid = parse_number(value).unwrap_or(attributes.uid),
            "gid" => attributes.gid = parse_number(value).unwrap_or(attributes.gid),
            _ => {}
        }
        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
            // A layer must not forge overlayfs's own attributes (opaque, redirect, ...).
            if !name.starts_with("trusted.overlay.") {
                if let Ok(name) = CString::new(name) {
                    attributes.xattrs.push((name, value.to_vec()));
                }
            }
        }
    }
    Ok(attributes)
}

fn parse_number(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn copy_entry<R: Read>(entry: &mut tar::Entry<R>, file: &mut File, display: &str) -> Result<u64, UnpackError> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = entry.read(&mut buffer).map_err(UnpackError::Stream)?;
        if n == 0 {
            return Ok(total);
        }
        file.write_all(&buffer[..n]).map_err(io_at(display))?;
        total += n as u64;
    }
}

/// chown, chmod (after chown, which clears set-id bits), xattrs (after chown, which
/// clears file capabilities), then times.
fn apply_attributes(fd: RawFd, attributes: &Attributes) -> io::Result<()> {
    check(unsafe { libc::fchown(fd, attributes.uid, attributes.gid) })?;
    check(unsafe { libc::fchmod(fd, attributes.mode) })?;
    for (name, value) in &attributes.xattrs {
        let set = unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        check(set)?;
    }
    let times = [attributes.mtime, attributes.mtime];
    check(unsafe { libc::futimens(fd, times.as_ptr()) })?;
    Ok(())
}

fn set_times_at(parent: &OwnedFd, name: &CString, mtime: libc::timespec) -> io::Result<()> {
    let times = [mtime, mtime];
    check(unsafe { libc::utimensat(parent.as_raw_fd(), name.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

fn set_xattr_on_path_fd(fd: &OwnedFd, name: &str, value: &[u8]) -> io::Result<()> {
    let dir = reopen_readable(fd, libc::O_DIRECTORY)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    check(unsafe { libc::fsetxattr(dir.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

fn proc_fd_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

/// Turns an `O_PATH` descriptor into a readable one for the same inode.
fn reopen_readable(fd: &OwnedFd, extra: libc::c_int) -> io::Result<OwnedFd> {
    let path = proc_fd_path(fd.as_raw_fd());
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | extra) };
    Ok(unsafe { OwnedFd::from_raw_fd(check_fd(raw)?) })
}

/// `openat2(dir, name, O_PATH|flags, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS)`.
fn open_beneath(dir: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let fd = openat2(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC, resolve)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Like [`open_beneath`], for a directory only (a symlink or file fails).
fn open_dir_beneath(dir: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let fd = openat2(dir.as_raw_fd(), name, flags, resolve)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_path(dir: RawFd, path: &OsStr, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_bytes()).map_err(io::Error::other)?;
    let fd = openat2(dir, &path, libc::O_PATH | libc::O_CLOEXEC | flags, resolve)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(2)`: `open_how` with `flags` and `resolve` (also used by the Docker door's
/// volume copy).
pub(crate) fn openat2(dir: RawFd, path: &CString, flags: libc::c_int, resolve: u64) -> io::Result<RawFd> {
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve;
    let fd = unsafe {
        libc::syscall(libc::SYS_openat2, dir, path.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd as RawFd)
}

fn check(result: libc::c_int) -> io::Result<()> {
    check_fd(result).map(drop)
}

/// A descriptor, or the error a negative return stands for.
fn check_fd(result: libc::c_int) -> io::Result<RawFd> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn io_at(display: &str) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io { path: display.to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(0);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            // `append_data` refuses `..`; write the raw name like a hostile tool would.
            let name = path.as_bytes();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_cksum();
            builder.append(&header, std::io::empty()).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fs")).unwrap();
        let result = unpack_layer(bytes, &dir.path().join("fs")).map(|(stats, _)| stats);
        (dir, result)
    }

    #[test]
    fn hostile_paths_are_refused_and_nothing_lands_outside() {
        use tar::EntryType::*;
        let cases: &[&[(&str, tar::EntryType, &str)]] = &[
            &[("../escape", Regular, "")],
            &[("/abs", Regular, "")],
            &[("a/../../escape", Regular, "")],
            &[("link", Symlink, "../../.."), ("link/escape", Regular, "")],
            &[("dir", Directory, ""), ("dir/up", Symlink, "../../x")],
            &[("evil", Symlink, "/"), ("evil/escape", Regular, "")],
            &[("hard", Link, "../../etc/passwd")],
            &[("hard", Link, "/etc/passwd")],
            &[(".wh...", Regular, "")],
        ];
        for case in cases {
            let (dir, result) = unpack(&layer(case));
            assert!(matches!(result, Err(UnpackError::Hostile { .. })), "{case:?}: {result:?}");
            assert!(!dir.path().join("escape").exists());
        }
    }

    #[test]
    fn symlinks_inside_and_absolute_targets_are_kept() {
        use tar::EntryType::*;
        let (dir, result) = unpack(&layer(&[("bin", Directory, ""), ("bin/sh", Symlink, "/bin/busybox"), ("up", Symlink, "bin/../bin")]));
        result.unwrap();
        assert_eq!(std::fs::read_link(dir.path().join("fs/bin/sh")).unwrap(), Path::new("/bin/busybox"));
    }
}
