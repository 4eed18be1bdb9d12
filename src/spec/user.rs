//! Resolving a container's user (`name`, `uid`, `name:group`, `uid:gid`) to numeric ids
//! and supplementary groups, from `/etc/passwd` and `/etc/group` of the image's layers
//! (read from the top layer down, as the overlay would show them).
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    UnknownGroup(String),
}

/// A file of the image, looked up in `layers` (top first) inside the image only. A
/// whiteout hides it.
fn image_file(layers: &[PathBuf], relative: &str) -> Option<String> {
    let found = super::layers::find(layers, relative)?;
    match found.metadata.is_file() {
        true => std::fs::read_to_string(found.path).ok(),
        false => None,
    }
}

struct Entry {
    name: String,
    id: u32,
    gid: u32,
    members: Vec<String>,
}

fn parse_entries(text: &str, is_group: bool) -> Vec<Entry> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let id = fields.get(2)?.parse().ok()?;
            let (gid, members) = match is_group {
                true => (id, fields.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()),
                false => (fields.get(3)?.parse().ok()?, Vec::new()),
            };
            Some(Entry { name: fields[0].to_string(), id, gid, members })
        })
        .collect()
}

/// Resolves `user` (the image's `User` or the CRI's username) against the image.
pub fn resolve(layers: &[PathBuf], user: &str) -> Result<ResolvedUser, UserError> {
    let passwd = parse_entries(&image_file(layers, "etc/passwd").unwrap_or_default(), false);
    let groups = parse_entries(&image_file(layers, "etc/group").unwrap_or_default(), true);
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = passwd.iter().find(|e| e.name == user_part);
    let (uid, mut gid, name) = match (user_part.parse::<u32>(), entry) {
        (Ok(uid), _) => {
            let by_id = passwd.iter().find(|e| e.id == uid);
            (uid, by_id.map(|e| e.gid).unwrap_or(0), by_id.map(|e| e.name.clone()))
        }
        (Err(_), Some(entry)) => (entry.id, entry.gid, Some(entry.name.clone())),
        (Err(_), None) if user_part.is_empty() => (0, 0, Some("root".into())),
        (Err(_), None) => return Err(UserError::UnknownUser(user_part.to_string())),
    };
    if let Some(group) = group_part {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups.iter().find(|g| g.name == group).map(|g| g.id).ok_or_else(|| UserError::UnknownGroup(group.to_string()))?,
        };
    }
    let additional_gids = name
        .map(|name| groups.iter().filter(|g| g.members.contains(&name) && g.id != gid).map(|g| g.id).collect())
        .unwrap_or_default();
    Ok(ResolvedUser { uid, gid, additional_gids })
}

/// Groups named by number or by name in the image's `/etc/group` (Docker's `--group-add`).
pub fn group_ids(layers: &[PathBuf], names: &[String]) -> Result<Vec<u32>, UserError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let groups = parse_entries(&image_file(layers, "etc/group").unwrap_or_default(), true);
    names
        .iter()
        .map(|name| match name.parse::<u32>() {
            Ok(gid) => Ok(gid),
            Err(_) => groups.iter().find(|g| &g.name == name).map(|g| g.id).ok_or_else(|| UserError::UnknownGroup(name.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = dir.path().join("l1");
        std::fs::create_dir_all(layer.join("etc")).expect("mkdir");
        std::fs::write(layer.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/:/bin/false\n").expect("passwd");
        std::fs::write(layer.join("etc/group"), "root:x:0:\nwww:x:33:\nextra:x:50:www\n").expect("group");
        (dir, vec![layer])
    }

    #[test]
    fn names_and_numbers_resolve() {
        let (_dir, layers) = image();
        assert_eq!(resolve(&layers, "www").expect("www"), ResolvedUser { uid: 33, gid: 33, additional_gids: vec![50] });
        assert_eq!(resolve(&layers, "1000").expect("numeric").uid, 1000);
        assert_eq!(resolve(&layers, "www:root").expect("group").gid, 0);
        assert_eq!(resolve(&layers, "").expect("empty"), ResolvedUser::default());
        assert!(matches!(resolve(&layers, "nobody"), Err(UserError::UnknownUser(_))));
        assert!(matches!(resolve(&layers, "www:nogroup"), Err(UserError::UnknownGroup(_))));
    }
}
