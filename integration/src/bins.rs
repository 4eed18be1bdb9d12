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

/// The path of the built binary `name` (it may not exist).
pub fn bin_path(name: &str) -> PathBuf {
    bin_dir().join(name)
}
