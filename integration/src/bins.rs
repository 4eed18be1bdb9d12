//! Where the workspace's built binaries are: the directory above the test executable's
//! `deps/` (target/<profile>), or `BERTH_BIN_DIR` when set.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The directory holding the built binaries (berth-runc, ...).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe
        .parent()
        .expect("test executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of the built binary `name` (it may not exist): the static build in
/// `target/static/` (shims/runtime/build-static.sh) while it is newer than cargo's.
pub fn bin_path(name: &str) -> PathBuf {
    let built = bin_dir().join(name);
    if std::env::var_os("BERTH_BIN_DIR").is_some() {
        return built;
    }
    let Some(static_build) = bin_dir().parent().map(|target| target.join("static").join(name)) else { return built };
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&static_build), modified(&built)) {
        (Some(fresh), Some(cargo)) if fresh >= cargo => static_build,
        (Some(_), None) => static_build,
        _ => built,
    }
}

/// The built binary `name` as seen through a read-only detached mount of it that this
/// process holds (`/proc/<pid>/fd/<n>`): a program started from there has a read-only
/// `/proc/self/exe`, as one installed on a read-only mount does, and no mount is left
/// on the machine when this process exits. None if the binary or the mount API is
/// missing.
pub fn sealed_bin_path(name: &str) -> Option<PathBuf> {
    static SEALED: OnceLock<Vec<(String, OwnedFd)>> = OnceLock::new();
    let sealed = SEALED.get_or_init(|| {
        ["berth-runc"]
            .into_iter()
            .filter_map(|binary| {
                let path = std::ffi::CString::new(bin_path(binary).into_os_string().into_encoded_bytes()).ok()?;
                let tree = berth_runtime::sealed_exe::read_only_clone_of(&path).ok()?;
                unsafe { libc::fcntl(tree.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
                Some((binary.to_string(), tree))
            })
            .collect()
    });
    let (_, tree) = sealed.iter().find(|(binary, _)| binary == name)?;
    Some(PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), tree.as_raw_fd())))
}
