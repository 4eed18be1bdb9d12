//! Object ids: 64 hexadecimal digits from the kernel's random source, as Docker and
//! containerd's CRI make them; and id lookup by unique prefix.
use std::io::Read;

use super::{CoreError, CoreResult};

pub fn new_id() -> CoreResult<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(super::io_error("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Finds the one id among `ids` equal to `wanted` or starting with it.
pub fn resolve<'a>(kind: &str, wanted: &str, ids: impl Iterator<Item = &'a str>) -> CoreResult<String> {
    if wanted.is_empty() {
        return Err(CoreError::InvalidArgument(format!("{kind} id must not be empty")));
    }
    let mut found: Option<&str> = None;
    for id in ids {
        if id == wanted {
            return Ok(id.to_string());
        }
        if id.starts_with(wanted) {
            if found.is_some() {
                return Err(CoreError::InvalidArgument(format!("{kind} id prefix {wanted:?} is ambiguous")));
            }
            found = Some(id);
        }
    }
    found
        .map(str::to_string)
        .ok_or_else(|| CoreError::NotFound(format!("{kind} {wanted:?} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits_and_prefixes_resolve() {
        let id = new_id().expect("id");
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let ids = ["abc1", "abd2", "x"];
        assert_eq!(resolve("pod", "abc", ids.iter().copied()).expect("unique"), "abc1");
        assert!(matches!(resolve("pod", "ab", ids.iter().copied()), Err(CoreError::InvalidArgument(_))));
        assert!(matches!(resolve("pod", "zz", ids.iter().copied()), Err(CoreError::NotFound(_))));
        assert_eq!(resolve("pod", "x", ids.iter().copied()).expect("exact"), "x");
    }
}
