//! Files and directories that only root may reach, for berthd and the shim: the
//! directories under berth's root and state that hold layers, bundles, blobs, shim
//! state and sockets are 0700 (no way through for other users, as containerd's fix for
//! CVE-2021-41103 does), and the files berth writes there are 0600, whatever the umask.
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of a directory only root may enter.
pub const PRIVATE_DIR: u32 = 0o700;
/// The mode of a file or socket only root may read or connect to.
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `path` (and missing parents) and makes it 0700, also when it existed with
/// a wider mode (a root made by an older berth).
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    set_mode(path, PRIVATE_DIR)
}

/// Writes `bytes` to a new or truncated file with mode 0600.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_FILE).open(path)?;
    // A file that existed keeps its old mode through open: set it.
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    file.write_all(bytes)
}

/// Sets the permission bits of `path` (a socket after bind, say).
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn directories_and_files_get_their_modes_whatever_existed() {
        let base = std::env::temp_dir().join(format!("berth-private-fs-{}", std::process::id()));
        let dir = base.join("a/b");
        std::fs::create_dir_all(&dir).expect("mkdir");
        set_mode(&dir, 0o755).expect("chmod");
        create_private_dir(&dir).expect("private dir");
        assert_eq!(std::fs::metadata(&dir).expect("stat").mode() & 0o7777, 0o700);
        let file = dir.join("config.json");
        std::fs::write(&file, b"old").expect("write");
        set_mode(&file, 0o644).expect("chmod");
        write_private_file(&file, b"new").expect("private file");
        assert_eq!(std::fs::metadata(&file).expect("stat").mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read(&file).expect("read"), b"new");
        std::fs::remove_dir_all(&base).expect("cleanup");
    }
}
