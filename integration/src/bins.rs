//! Where the workspace's built binaries are: the directory above the test executable's
//! `deps/` (target/<profile>), or `BERTH_BIN_DIR` when set.

use std::path::PathBuf;

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
