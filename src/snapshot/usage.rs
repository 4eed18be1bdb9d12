//! Disk usage of snapshot directories: bytes in allocated blocks and inodes, each inode
//! counted once, symlinks not followed and other filesystems mounted below not entered,
//! and what a running container deletes during the walk skipped.
use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub bytes: u64,
    pub inodes: u64,
}

impl DiskUsage {
    /// What everything below `dir` uses.
    pub fn of_dir(dir: &Path) -> io::Result<DiskUsage> {
        let mut usage = DiskUsage::default();
        let device = match std::fs::symlink_metadata(dir) {
            Ok(meta) => meta.dev(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(usage),
            Err(error) => return Err(error),
        };
        usage.walk(dir, device, &mut HashSet::new())?;
        Ok(usage)
    }

    pub fn add(&mut self, other: DiskUsage) {
        self.bytes += other.bytes;
        self.inodes += other.inodes;
    }

    fn walk(&mut self, dir: &Path, device: u64, seen: &mut HashSet<(u64, u64)>) -> io::Result<()> {
        let gone = |error: &io::Error| error.kind() == io::ErrorKind::NotFound;
        let entries = match std::fs::read_dir(dir) {
            Err(error) if gone(&error) => return Ok(()),
            entries => entries?,
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.metadata() {
                Err(error) if gone(&error) => continue,
                meta => meta?,
            };
            if seen.insert((meta.dev(), meta.ino())) {
                self.bytes += meta.blocks() * 512;
                self.inodes += 1;
            }
            if meta.is_dir() && meta.dev() == device {
                self.walk(&entry.path(), device, seen)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_inode_once_and_a_missing_dir_as_empty() {
        let dir = std::env::temp_dir().join(format!("berth-usage-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("dirs");
        std::fs::write(dir.join("sub/file"), vec![7u8; 10_000]).expect("file");
        std::fs::hard_link(dir.join("sub/file"), dir.join("link")).expect("hard link");
        let usage = DiskUsage::of_dir(&dir).expect("walk");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(usage.inodes, 2, "the sub dir and the file, the hard link counted once");
        assert!(usage.bytes >= 10_000, "{usage:?}");
        assert_eq!(DiskUsage::of_dir(&dir).expect("missing dir"), DiskUsage::default());
    }
}
