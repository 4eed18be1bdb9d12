//! Image references parsed as Docker parses them: `busybox` is
//! `docker.io/library/busybox:latest`; tags, digests (`name@sha256:...`) and registry
//! hosts with ports. Names are stored fully qualified.
//!
//! The grammar is distribution's (`reference/regexp.go`), checked by hand: the regular
//! expression that `oci_client`'s own parser compiles for it holds about 10 MiB of
//! automaton for the daemon's whole life.
use oci_client::Reference;

use super::ImageError;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The longest repository name distribution accepts.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Parses and normalizes a reference; `InvalidReference` names the reason.
pub fn parse(text: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: &str| ImageError::InvalidReference { reference: text.to_string(), reason: reason.to_string() };
    if text.is_empty() || text.trim() != text {
        return Err(invalid("empty or surrounded by spaces"));
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    let last_component = rest.rfind('/').map_or(0, |slash| slash + 1);
    let (name, tag) = match rest[last_component..].find(':') {
        Some(colon) => (&rest[..last_component + colon], Some(&rest[last_component + colon + 1..])),
        None => (rest, None),
    };
    if tag.is_some_and(|tag| !valid_tag(tag)) {
        return Err(invalid("invalid tag format"));
    }
    if let Some(digest) = digest {
        check_digest(digest).map_err(invalid)?;
    }
    check_name(name).map_err(invalid)?;
    let (registry, repository) = split_registry(name);
    if repository.len() > NAME_MAX {
        return Err(invalid("repository name must not be more than 255 characters"));
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into()),
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").into()),
    })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= TAG_MAX && tag.bytes().next().is_some_and(word) && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, with the hex's length fixed by the algorithms registries know.
fn check_digest(digest: &str) -> Result<(), &'static str> {
    let (algorithm, hex) = digest.split_once(':').ok_or("invalid checksum digest format")?;
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid checksum digest format");
    }
    let wanted = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != wanted {
        return Err("invalid checksum digest length");
    }
    Ok(())
}

/// An optional registry host (`host[:port]`) and then path components.
fn check_name(name: &str) -> Result<(), &'static str> {
    let components: Vec<&str> = name.split('/').collect();
    for (index, component) in components.iter().enumerate() {
        let is_host = index == 0 && components.len() > 1 && valid_host(component);
        if !is_host && !valid_path_component(component) {
            let uppercase = component.bytes().any(|b| b.is_ascii_uppercase());
            return Err(if uppercase { "repository name must be lowercase" } else { "invalid reference format" });
        }
    }
    Ok(())
}

/// Domain components (`[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`) joined by
/// dots, and an optional `:port`.
fn valid_host(host: &str) -> bool {
    let (domain, port) = match host.split_once(':') {
        Some((domain, port)) => (domain, Some(port)),
        None => (host, None),
    };
    if port.is_some_and(|port| port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    domain.split('.').all(|part| {
        let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
        edge_ok(part.bytes().next()) && edge_ok(part.bytes().last()) && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// `[a-z0-9]+` runs joined by one `.`, one or two `_`, or any number of `-`.
fn valid_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !component.starts_with(alnum) || !component.ends_with(alnum) {
        return false;
    }
    component.split(alnum).filter(|separator| !separator.is_empty()).all(|separator| {
        matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
    })
}

/// Docker's normalization: the first component is a registry when it has a dot or a
/// port or is `localhost`; Docker Hub's official images live under `library/`.
fn split_registry(name: &str) -> (String, String) {
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), rest.to_string()),
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if registry == DOCKER_HUB_LEGACY {
        registry = DOCKER_HUB.to_string();
    }
    if registry == DOCKER_HUB && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    (registry, repository)
}

/// `registry/repository` of a reference.
pub fn repository_name(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// The tag name `registry/repository:tag` (None when the reference has only a digest).
pub fn tag_name(reference: &Reference) -> Option<String> {
    reference.tag().map(|tag| format!("{}:{tag}", repository_name(reference)))
}

/// The digest name `registry/repository@digest`.
pub fn digest_name(reference: &Reference, digest: &str) -> String {
    format!("{}@{digest}", repository_name(reference))
}

/// Whether `text` looks like an image ID (a full or short config digest, with or
/// without `sha256:`) rather than a name.
pub fn as_image_id(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    let is_hex = hex.len() >= 12 && hex.len() <= 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_hex.then(|| hex.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_docker() {
        let busybox = parse("busybox").unwrap();
        assert_eq!(tag_name(&busybox).unwrap(), "docker.io/library/busybox:latest");
        let ported = parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(ported.registry(), "127.0.0.1:5000");
        assert_eq!(tag_name(&ported).unwrap(), "127.0.0.1:5000/team/app:v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = parse(&format!("quay.io/x/y@{digest}")).unwrap();
        assert_eq!(tag_name(&pinned), None);
        assert_eq!(digest_name(&pinned, &digest), format!("quay.io/x/y@{digest}"));
        assert_eq!(repository_name(&parse("user/app").unwrap()), "docker.io/user/app");
    }

    #[test]
    fn invalid_references_say_why() {
        for bad in ["", "Busybox", "busybox:", "a@sha256:123", "a b", "-x", "busybox:tag:tag"] {
            assert!(matches!(parse(bad), Err(ImageError::InvalidReference { .. })), "{bad:?}");
        }
    }

    /// The hand-written grammar accepts and normalizes exactly as oci_client's regular
    /// expression does.
    #[test]
    fn agrees_with_the_distribution_regexp() {
        let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let long = "a".repeat(256);
        let cases = [
            "busybox", "busybox:1.36", "library/busybox", "user/app:v1.2-rc_3", "index.docker.io/busybox", "docker.io/x/y/z:tag",
            "localhost/app", "localhost:5000/app:latest", "127.0.0.1:5000/team/app:v1", "my-registry.example.com:443/a/b",
            "test.com:tag", "test.com:5000", "foo_bar.com:8080", "lowercase:Uppercase", "a__b", "a___b", "a--b", "a-b", "a.b",
            "a..b", "a._b", "-a", "a-", "Uppercase", "Host.Com/app", "host.com/App", "a//b", "/a", "a/", "a:", ":tag", "a:.tag",
            "a:_tag", "a:-tag", "a:t@g", "x@sha256:123", "x@sha384:abc", "x@md5:0123456789abcdef0123456789abcdef", "a@", "@x",
            "host:port/app", "host:80x/app", "-host.com/app", "host-.com/app", "ho-st.com/app", "a/b@sha256:xyz",
            &long, &format!("quay.io/x/y@{digest}"), &format!("x:tag@{digest}"), &format!("x@{digest}"),
            &format!("x:{}", "t".repeat(128)), &format!("x:{}", "t".repeat(129)), "ünicode", "a b",
        ];
        for case in cases {
            let ours = parse(case).ok().map(|r| r.whole());
            let theirs = case.parse::<Reference>().ok().map(|r| r.whole());
            assert_eq!(ours, theirs, "{case:?}");
        }
    }

    #[test]
    fn ids_are_told_from_names() {
        assert_eq!(as_image_id("sha256:0123456789ab").as_deref(), Some("0123456789ab"));
        assert_eq!(as_image_id("busybox"), None);
    }
}
