//! Resolution of the OCI `linux.cgroupsPath` into a path inside a cgroup hierarchy,
//! following runc's cgroupfs driver; pure functions, no filesystem access.

use std::path::{Component, Path, PathBuf};

use super::CgroupError;

/// What `cgroupsPath` asks for before it is placed in a hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// Relative to the hierarchy root.
    Absolute(PathBuf),
    /// Relative to the caller's own cgroup (v1) or its parent (v2), as runc does.
    Relative(PathBuf),
}

/// Lexically cleans `path` the way runc's `CleanPath` does: `..` can never climb above
/// the root, and a relative path stays relative (but cannot escape upward).
pub fn clean_path(path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let mut out = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    out.extend(parts);
    out
}

/// Resolves `cgroupsPath`: absolute and relative paths are cleaned; an empty or missing
/// one becomes the container id (relative, as runc's default); the systemd form
/// `slice:prefix:name` maps to the path systemd would give the scope.
pub fn resolve(cgroups_path: Option<&Path>, container_id: &str) -> Result<Requested, CgroupError> {
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if raw.is_empty() {
        return relative_of(Path::new(container_id), &raw);
    }
    if let Some(mapped) = systemd_form(&raw)? {
        return Ok(Requested::Absolute(mapped));
    }
    let p = Path::new(&raw);
    if p.is_absolute() {
        return Ok(Requested::Absolute(clean_path(p)));
    }
    relative_of(p, &raw)
}

fn relative_of(p: &Path, raw: &str) -> Result<Requested, CgroupError> {
    let cleaned = clean_path(p);
    if cleaned.as_os_str().is_empty() {
        return Err(CgroupError::InvalidPath {
            path: raw.to_string(),
            reason: "resolves to the caller's own cgroup".into(),
        });
    }
    Ok(Requested::Relative(cleaned))
}

/// Recognises `slice:prefix:name` (no `/`, exactly two `:`) and maps it to
/// `<expanded slice>/<prefix>-<name>.scope` (or `<name>` when it is itself a slice).
fn systemd_form(raw: &str) -> Result<Option<PathBuf>, CgroupError> {
    let parts: Vec<&str> = raw.split(':').collect();
    if parts.len() != 3 || raw.contains('/') {
        return Ok(None);
    }
    let invalid = |reason: &str| CgroupError::InvalidPath {
        path: raw.to_string(),
        reason: reason.to_string(),
    };
    let (slice, prefix, name) = (parts[0], parts[1], parts[2]);
    if name.is_empty() {
        return Err(invalid("systemd form slice:prefix:name has an empty name"));
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = expand_slice(slice).ok_or_else(|| invalid("invalid systemd slice name"))?;
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit == "." || unit == ".." {
        return Err(invalid("invalid systemd unit name"));
    }
    path.push(unit);
    Ok(Some(path))
}

/// Expands a systemd slice name to its cgroup path:
/// `a-b.slice` -> `/a.slice/a-b.slice`; `-.slice` -> `/`.
pub fn expand_slice(slice: &str) -> Option<PathBuf> {
    let stem = slice.strip_suffix(".slice")?;
    if stem.is_empty() || slice.contains('/') {
        return None;
    }
    let mut path = PathBuf::from("/");
    if stem == "-" {
        return Some(path);
    }
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return None;
        }
        path.push(format!("{prefix}{part}.slice"));
        prefix.push_str(part);
        prefix.push('-');
    }
    Some(path)
}

/// Places a requested path in a hierarchy, given the caller's own cgroup there
/// (v2 callers pass the parent of their own cgroup, as runc does).
pub fn place(requested: &Requested, own_cgroup: &Path) -> PathBuf {
    match requested {
        Requested::Absolute(p) => p.clone(),
        Requested::Relative(p) => clean_path(&Path::new("/").join(own_cgroup).join(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abs(p: &str) -> Requested {
        Requested::Absolute(PathBuf::from(p))
    }

    #[test]
    fn absolute_paths_are_cleaned() {
        assert_eq!(resolve(Some(Path::new("/a/b")), "id").unwrap(), abs("/a/b"));
        assert_eq!(
            resolve(Some(Path::new("/a/./b/../c/")), "id").unwrap(),
            abs("/a/c")
        );
        assert_eq!(
            resolve(Some(Path::new("/../../x")), "id").unwrap(),
            abs("/x")
        );
    }

    #[test]
    fn relative_paths_cannot_escape() {
        let r = resolve(Some(Path::new("../../a/b")), "id").unwrap();
        assert_eq!(r, Requested::Relative(PathBuf::from("a/b")));
        assert!(resolve(Some(Path::new("a/..")), "id").is_err());
    }

    #[test]
    fn empty_defaults_to_the_container_id() {
        let want = Requested::Relative(PathBuf::from("c1"));
        assert_eq!(resolve(None, "c1").unwrap(), want);
        assert_eq!(resolve(Some(Path::new("")), "c1").unwrap(), want);
    }

    #[test]
    fn systemd_form_maps_to_the_scope_path() {
        let r = resolve(Some(Path::new("system.slice:docker:abc")), "id").unwrap();
        assert_eq!(r, abs("/system.slice/docker-abc.scope"));
        let r = resolve(Some(Path::new("kubepods-besteffort.slice:cri:x")), "id").unwrap();
        assert_eq!(
            r,
            abs("/kubepods.slice/kubepods-besteffort.slice/cri-x.scope")
        );
        let r = resolve(Some(Path::new(":runc:c")), "id").unwrap();
        assert_eq!(r, abs("/system.slice/runc-c.scope"));
        let r = resolve(Some(Path::new("-.slice::c")), "id").unwrap();
        assert_eq!(r, abs("/c.scope"));
        assert!(resolve(Some(Path::new("bad:p:n")), "id").is_err());
        assert!(resolve(Some(Path::new("a--b.slice:p:n")), "id").is_err());
    }

    #[test]
    fn colons_with_slashes_are_plain_paths() {
        assert_eq!(
            resolve(Some(Path::new("/a:b:c")), "id").unwrap(),
            abs("/a:b:c")
        );
    }

    #[test]
    fn placement_joins_relative_paths_to_the_own_cgroup() {
        assert_eq!(place(&abs("/x"), Path::new("/own")), PathBuf::from("/x"));
        let rel = Requested::Relative(PathBuf::from("c1"));
        assert_eq!(
            place(&rel, Path::new("/own/sub")),
            PathBuf::from("/own/sub/c1")
        );
        assert_eq!(place(&rel, Path::new("/")), PathBuf::from("/c1"));
    }
}
