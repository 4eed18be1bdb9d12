//! Image references parsed as Docker parses them: `busybox` is
//! `docker.io/library/busybox:latest`; tags, digests (`name@sha256:...`) and registry
//! hosts with ports. Names are stored fully qualified.
use oci_client::Reference;

use super::ImageError;

/// Parses and normalizes a reference; `InvalidReference` names the reason.
pub fn parse(text: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference { reference: text.to_string(), reason };
    if text.is_empty() || text.trim() != text {
        return Err(invalid("empty or surrounded by spaces".into()));
    }
    let reference: Reference = text.parse().map_err(|error: oci_client::ParseError| invalid(error.to_string()))?;
    Ok(reference)
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

    #[test]
    fn ids_are_told_from_names() {
        assert_eq!(as_image_id("sha256:0123456789ab").as_deref(), Some("0123456789ab"));
        assert_eq!(as_image_id("busybox"), None);
    }
}
