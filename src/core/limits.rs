//! Limits on what a request may carry, checked before anything is made: label and
//! annotation counts and sizes, annotations reserved to berth itself, and a log file
//! that stays inside its pod's log directory. A request over a limit gets
//! InvalidArgument, never a huge record or a file outside its place.
use std::path::Path;

use super::{CoreError, CoreResult, Labels};
use crate::spec::{LOG_DIRECTORY_ANNOTATION, LOG_PATH_ANNOTATION};

/// Most labels (or annotations) one object may have.
pub const MAX_ENTRIES: usize = 256;
/// Longest key of a label or annotation (a DNS prefix and a name, as Kubernetes).
pub const MAX_KEY_BYTES: usize = 317;
/// Most bytes all of one object's annotations (or labels) may take together.
pub const MAX_TOTAL_BYTES: usize = 256 << 10;

/// Annotations the shim acts on: set by berth, never taken from a request.
const RESERVED_ANNOTATIONS: &[&str] = &[LOG_PATH_ANNOTATION, LOG_DIRECTORY_ANNOTATION];

/// Checks one map of labels or annotations (`what` names it in the error).
pub fn check_labels(what: &str, labels: &Labels) -> CoreResult<()> {
    if labels.len() > MAX_ENTRIES {
        return Err(CoreError::InvalidArgument(format!("{} {what} is more than the {MAX_ENTRIES} allowed", labels.len())));
    }
    if let Some(key) = labels.keys().find(|key| key.is_empty() || key.len() > MAX_KEY_BYTES) {
        return Err(CoreError::InvalidArgument(format!("{what} key {:?} must have 1 to {MAX_KEY_BYTES} bytes", truncated(key))));
    }
    let total: usize = labels.iter().map(|(key, value)| key.len() + value.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(CoreError::InvalidArgument(format!("{what} take {total} bytes, more than the {MAX_TOTAL_BYTES} allowed")));
    }
    Ok(())
}

/// Refuses annotations that only berth may set.
pub fn check_reserved_annotations(annotations: &Labels) -> CoreResult<()> {
    match RESERVED_ANNOTATIONS.iter().find(|key| annotations.contains_key(**key)) {
        Some(key) => Err(CoreError::InvalidArgument(format!("the annotation {key} is reserved to berth"))),
        None => Ok(()),
    }
}

/// A container's log file must lie inside its pod's log directory, when the pod has
/// one (a pod without one gets its log path from the front door itself).
pub fn check_log_path(log_path: &str, log_directory: &str) -> CoreResult<()> {
    if log_path.is_empty() || log_directory.is_empty() {
        return Ok(());
    }
    let inside = Path::new(log_path)
        .strip_prefix(log_directory)
        .ok()
        .filter(|rest| !rest.as_os_str().is_empty())
        .is_some_and(|rest| rest.components().all(|c| matches!(c, std::path::Component::Normal(_))));
    match inside {
        true => Ok(()),
        false => Err(CoreError::InvalidArgument(format!("log path {log_path:?} is not inside the pod's log directory {log_directory:?}"))),
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_over_a_limit_are_refused() {
        let many: Labels = (0..=MAX_ENTRIES).map(|n| (format!("k{n}"), String::new())).collect();
        assert!(check_labels("labels", &many).is_err());
        let long_key: Labels = [("k".repeat(MAX_KEY_BYTES + 1), String::new())].into();
        assert!(check_labels("labels", &long_key).is_err());
        let big: Labels = [("k".into(), "v".repeat(MAX_TOTAL_BYTES))].into();
        assert!(check_labels("annotations", &big).is_err());
        let fine: Labels = [("app".into(), "web".into())].into();
        assert!(check_labels("labels", &fine).is_ok());
    }

    #[test]
    fn log_paths_stay_in_their_directory() {
        assert!(check_log_path("/var/log/pods/p/c/0.log", "/var/log/pods/p").is_ok());
        assert!(check_log_path("", "/var/log/pods/p").is_ok());
        assert!(check_log_path("/etc/passwd", "/var/log/pods/p").is_err());
        assert!(check_log_path("/var/log/pods/p/../../x", "/var/log/pods/p").is_err());
        assert!(check_log_path("/var/log/pods/p", "/var/log/pods/p").is_err());
        assert!(check_log_path("/var/lib/berth/docker/x/container.log", "").is_ok());
        let reserved: Labels = [(LOG_PATH_ANNOTATION.to_string(), "/etc/shadow".to_string())].into();
        assert!(check_reserved_annotations(&reserved).is_err());
    }

    #[test]
    fn relative_log_paths_are_joined_only_when_plain() {
        assert_eq!(super::super::log_file("/logs", "c/0.log").ok().as_deref(), Some("/logs/c/0.log"));
        for bad in ["/etc/passwd", "../x.log", "c/../../x", "./x", "c/", "a\0b"] {
            assert!(super::super::log_file("/logs", bad).is_err(), "{bad:?}");
        }
    }
}
