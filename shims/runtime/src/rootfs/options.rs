//! Mount options as the runtime-spec writes them: flags to set or clear, propagation
//! changes, recursive attributes (`rro`, `rnosuid`, ...), and the rest as fs data.

use nix::mount::MsFlags;

/// A mount's options, sorted by what the kernel does with them.
#[derive(Debug)]
pub struct ParsedOptions {
    pub flags: MsFlags,
    pub cleared: MsFlags,
    pub propagation: Vec<MsFlags>,
    /// MOUNT_ATTR_* bits to set and clear recursively (mount_setattr).
    pub recursive_set: u64,
    pub recursive_clear: u64,
    /// `idmap` (Some(false)) or `ridmap` (Some(true), every submount too).
    pub idmap: Option<bool>,
    pub data: Vec<String>,
}

impl ParsedOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    let flag = match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    };
    Some(flag)
}

/// (name, set?, flag) for the flag options.
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("ro", true, MsFlags::MS_RDONLY), ("rw", false, MsFlags::MS_RDONLY),
    ("nosuid", true, MsFlags::MS_NOSUID), ("suid", false, MsFlags::MS_NOSUID),
    ("nodev", true, MsFlags::MS_NODEV), ("dev", false, MsFlags::MS_NODEV),
    ("noexec", true, MsFlags::MS_NOEXEC), ("exec", false, MsFlags::MS_NOEXEC),
    ("sync", true, MsFlags::MS_SYNCHRONOUS), ("async", false, MsFlags::MS_SYNCHRONOUS),
    ("dirsync", true, MsFlags::MS_DIRSYNC), ("remount", true, MsFlags::MS_REMOUNT),
    ("mand", true, MsFlags::MS_MANDLOCK), ("nomand", false, MsFlags::MS_MANDLOCK),
    ("atime", false, MsFlags::MS_NOATIME), ("noatime", true, MsFlags::MS_NOATIME),
    ("diratime", false, MsFlags::MS_NODIRATIME), ("nodiratime", true, MsFlags::MS_NODIRATIME),
    ("relatime", true, MsFlags::MS_RELATIME), ("norelatime", false, MsFlags::MS_RELATIME),
    ("strictatime", true, MsFlags::MS_STRICTATIME), ("nostrictatime", false, MsFlags::MS_STRICTATIME),
    ("lazytime", true, MsFlags::MS_LAZYTIME), ("nolazytime", false, MsFlags::MS_LAZYTIME),
    ("silent", true, MsFlags::MS_SILENT), ("loud", false, MsFlags::MS_SILENT),
    ("bind", true, MsFlags::MS_BIND), ("rbind", true, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("defaults", false, MsFlags::empty()),
];

const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;
const ATTR_NOATIME: u64 = 0x10;
const ATTR_STRICTATIME: u64 = 0x20;
const ATTR_NODIRATIME: u64 = 0x80;
const ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// (name, set?, attribute) for the recursive options of runtime-spec 1.1.
const RECURSIVE: &[(&str, bool, u64)] = &[
    ("rro", true, ATTR_RDONLY), ("rrw", false, ATTR_RDONLY),
    ("rnosuid", true, ATTR_NOSUID), ("rsuid", false, ATTR_NOSUID),
    ("rnodev", true, ATTR_NODEV), ("rdev", false, ATTR_NODEV),
    ("rnoexec", true, ATTR_NOEXEC), ("rexec", false, ATTR_NOEXEC),
    ("rnoatime", true, ATTR_NOATIME), ("rstrictatime", true, ATTR_STRICTATIME),
    ("rnodiratime", true, ATTR_NODIRATIME), ("rdiratime", false, ATTR_NODIRATIME),
    ("rnosymfollow", true, ATTR_NOSYMFOLLOW), ("rsymfollow", false, ATTR_NOSYMFOLLOW),
];

pub fn parse(options: &[String]) -> ParsedOptions {
    let mut parsed = ParsedOptions {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: Vec::new(),
        recursive_set: 0,
        recursive_clear: 0,
        idmap: None,
        data: Vec::new(),
    };
    for option in options {
        if let Some(&(_, set, flag)) = FLAGS.iter().find(|(name, _, _)| name == option) {
            if set {
                parsed.flags |= flag;
            } else {
                parsed.flags &= !flag;
                parsed.cleared |= flag;
            }
        } else if let Some(flag) = propagation_flag(option) {
            parsed.propagation.push(flag);
        } else if let Some(&(_, set, attr)) = RECURSIVE.iter().find(|(name, _, _)| name == option) {
            if set { parsed.recursive_set |= attr } else { parsed.recursive_clear |= attr }
        } else if option == "idmap" || option == "ridmap" {
            parsed.idmap = Some(option == "ridmap");
        } else if option != "tmpcopyup" && option != "nosymfollow" && option != "symfollow" {
            parsed.data.push(option.clone());
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sorts_options() {
        let parsed = parse(&strings(&["rbind", "ro", "nosuid", "rslave", "mode=755", "size=1k", "rro"]));
        assert!(parsed.is_bind());
        assert!(parsed.flags.contains(MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(parsed.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(parsed.data().as_deref(), Some("mode=755,size=1k"));
        assert_eq!(parsed.recursive_set, ATTR_RDONLY);
        let rw = parse(&strings(&["ro", "rw"]));
        assert!(!rw.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(parse(&strings(&["rbind", "idmap"])).idmap, Some(false));
        assert_eq!(parse(&strings(&["bind", "ridmap"])).idmap, Some(true));
        assert!(parse(&strings(&["bind", "ridmap"])).data.is_empty());
    }
}
