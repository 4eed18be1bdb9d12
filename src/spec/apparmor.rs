//! AppArmor on this node: whether the kernel runs it, and whether a named profile is
//! loaded, so that a container asking for a profile that is not there is refused when
//! it is created rather than failing later at start.
use std::path::Path;

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// Whether the kernel runs AppArmor.
pub fn enabled() -> bool {
    std::fs::read(ENABLED).is_ok_and(|v| v.first() == Some(&b'Y'))
}

/// Refuses `profile` when AppArmor is off, or when the kernel's list of loaded
/// profiles (lines `NAME (MODE)`) is readable and lacks it.
pub fn check_loaded(profile: &str) -> Result<(), String> {
    if !enabled() {
        return Err(format!("apparmor profile {profile:?} requested, but AppArmor is not enabled on this node"));
    }
    let Ok(loaded) = std::fs::read_to_string(Path::new(PROFILES)) else { return Ok(()) };
    if profile_listed(&loaded, profile) {
        Ok(())
    } else {
        Err(format!("apparmor profile {profile:?} is not loaded (load it with apparmor_parser)"))
    }
}

fn profile_listed(listing: &str, profile: &str) -> bool {
    listing.lines().any(|line| line.rsplit_once(" (").map_or(line, |(name, _)| name) == profile)
}

#[cfg(test)]
mod tests {
    use super::profile_listed;

    #[test]
    fn a_profile_is_found_by_its_whole_name() {
        let listing = "cri-validate-apparmor-test-deny-write (enforce)\nnvidia_modprobe (enforce)\nlsb_release (complain)\n";
        assert!(profile_listed(listing, "cri-validate-apparmor-test-deny-write"));
        assert!(profile_listed(listing, "lsb_release"));
        assert!(!profile_listed(listing, "cri-validate-apparmor-test"));
        assert!(!profile_listed(listing, "enforce"));
    }
}
