//! Named crash points, for the crash-safety test (`integration/tests/cri_crash_points.rs`).
//! Built with the cargo feature `crash-points`, [`crash_point!`] kills the daemon with
//! SIGKILL when the environment variable `BERTH_CRASH_POINT` names the point it marks,
//! as a power cut or the OOM killer would. Without the feature it compiles to nothing.
//! Each point sits between two steps that touch the kernel or the disk; [`POINTS`]
//! lists them all (the test walks that list).

/// The variable that names the point at which the daemon dies.
pub const VARIABLE: &str = "BERTH_CRASH_POINT";

/// Every crash point, grouped by operation, in the order an operation reaches them.
pub const POINTS: &[&str] = &[
    "run_pod_sandbox.after_reserve",
    "run_pod_sandbox.after_pin",
    "run_pod_sandbox.after_shm",
    "run_pod_sandbox.after_pod_init",
    "network.attach.after_endpoints",
    "network.attach.after_plumb",
    "run_pod_sandbox.after_network",
    "create_container.after_reserve",
    "create_container.after_snapshot",
    "create_container.after_bundle",
    "start_container.after_intent",
    "start_container.after_shim",
    "start_container.after_create_task",
    "start_container.after_start_task",
    "stop_pod_sandbox.after_intent",
    "stop_pod_sandbox.after_stop_containers",
    "stop_pod_sandbox.after_network",
    "stop_pod_sandbox.after_pod_init",
    "stop_pod_sandbox.after_unpin",
    "remove_container.after_intent",
    "remove_container.after_stop",
    "remove_container.after_snapshot",
    "remove_pod_sandbox.after_intent",
    "remove_pod_sandbox.after_remove_containers",
    "remove_pod_sandbox.after_shims",
    "remove_pod_sandbox.after_teardown",
    "pull.after_layer_download",
    "pull.after_layer_commit",
    "pull.after_manifests",
    "docker.create.after_sandbox",
    "docker.start.after_endpoints",
    "docker.remove.after_sandbox",
];

/// Marks a crash point (a string literal from [`POINTS`]).
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        $crate::crash::reached($name)
    };
}

/// Dies here if the daemon was told to (with the `crash-points` feature only).
#[cfg(feature = "crash-points")]
pub fn reached(name: &str) {
    debug_assert!(POINTS.contains(&name), "crash point {name} is not listed");
    if std::env::var(VARIABLE).is_ok_and(|wanted| wanted == name) {
        tracing::warn!(point = name, "crash point reached: the daemon kills itself");
        // SAFETY: kill(2) on this process's own pid; it does not return.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn reached(_name: &str) {}

#[cfg(test)]
mod tests {
    #[test]
    fn points_are_unique_and_named_operation_dot_step() {
        let mut seen = std::collections::BTreeSet::new();
        for point in super::POINTS {
            assert!(seen.insert(point), "{point} is listed twice");
            assert!(point.contains('.') && !point.contains(' '), "{point}");
        }
    }
}
