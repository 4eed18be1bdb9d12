//! Reading kernel-made files (/proc, cgroup files). They report a size of 0, so
//! `std::fs::read_to_string` sizes its buffer by probing (a 32-byte read, then
//! doubling: nine reads for a mountinfo); these are read into a large buffer at once.

use std::io::Read;
use std::path::Path;

/// The whole file as text.
pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    let mut text = String::with_capacity(16 * 1024);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}
