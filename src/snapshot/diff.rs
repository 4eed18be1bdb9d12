//! Turns an overlay upper directory back into an OCI layer tar: overlayfs whiteouts
//! (0/0 character devices) become `.wh.<name>` entries, opaque directories
//! (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry, hard links within the
//! directory become link entries. Entries are written in sorted order.
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::Metadata;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Writes the tar of `upper` to `out`.
pub fn write_layer_tar(upper: &Path, out: impl Write) -> io::Result<()> {
    let mut writer = DiffWriter { builder: tar::Builder::new(out), upper: upper.to_path_buf(), links: HashMap::new() };
    writer.builder.follow_symlinks(false);
    writer.directory(Path::new(""))?;
    writer.builder.into_inner()?.flush()
}

struct DiffWriter<W: Write> {
    builder: tar::Builder<W>,
    upper: PathBuf,
    /// (device, inode) -> the first path written for a hard-linked file.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> DiffWriter<W> {
    fn directory(&mut self, relative: &Path) -> io::Result<()> {
        let full = self.upper.join(relative);
        if !relative.as_os_str().is_empty() && is_opaque(&full) {
            self.empty_file(&relative.join(".wh..wh..opq"))?;
        }
        let mut names: Vec<_> = std::fs::read_dir(&full)?.map(|entry| entry.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            self.entry(&relative.join(name))?;
        }
        Ok(())
    }

    fn entry(&mut self, relative: &Path) -> io::Result<()> {
        let full = self.upper.join(relative);
        let meta = std::fs::symlink_metadata(&full)?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            let name = format!(".wh.{}", relative.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
            return self.empty_file(&relative.with_file_name(name));
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if kind.is_dir() {
            self.builder.append_data(&mut header, relative, io::empty())?;
            return self.directory(relative);
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(&full)?;
            return self.builder.append_link(&mut header, relative, target);
        }
        if kind.is_file() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                return self.builder.append_link(&mut header, relative, first);
            }
            self.links.insert((meta.dev(), meta.ino()), relative.to_path_buf());
        }
        self.special_or_file(&mut header, relative, &full, &meta)
    }

    fn special_or_file(&mut self, header: &mut tar::Header, relative: &Path, full: &Path, meta: &Metadata) -> io::Result<()> {
        if meta.file_type().is_file() {
            let file = std::fs::File::open(full)?;
            return self.builder.append_data(header, relative, file);
        }
        header.set_size(0);
        self.builder.append_data(header, relative, io::empty())
    }

    fn empty_file(&mut self, relative: &Path) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        self.builder.append_data(&mut header, relative, io::empty())
    }
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    let name = c"trusted.overlay.opaque";
    let mut value = [0u8; 4];
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    n == 1 && value[0] == b'y'
}
