//! berthd killed at each crash point of the Docker façade (`docker.*` in
//! `berth::crash::POINTS`) while the real docker CLI drives it, then started again: a cut
//! `docker create` is undone, a cut `docker start` leaves the container created and
//! holding no endpoint, a cut `docker rm` is finished; the kernel's view (mounts, pinned
//! namespaces, cgroups, links and nftables in the daemon's namespace, processes, the
//! daemon's directories) is what it was before the operation, a container that ran
//! before keeps running, and the operation works when tried again.
//!
//! The daemon under test is the `crash-points` build (see `cri_crash_points`).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use berth_integration::berthd::Berthd;
use berth_integration::bins::bin_path;
use berth_integration::docker::DockerWorld;
use berth_integration::kernel_view::{crash_berthd, KernelView};

/// The operation a point belongs to, by its second word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Start,
    Remove,
}

fn operation_of(point: &str) -> Operation {
    match point.split('.').nth(1).unwrap_or_default() {
        "create" => Operation::Create,
        "start" => Operation::Start,
        "remove" => Operation::Remove,
        other => panic!("crash point {point}: no docker operation {other} in this test"),
    }
}

const VICTIM: &str = "victim";
/// The victim publishes a port, so that a cut start or create would leave nft rules.
const CREATE: [&str; 8] = ["create", "--name", VICTIM, "-p", "18080:80", "busybox", "sleep", "300"];

fn restart(daemon: &mut Berthd, binary: Option<std::path::PathBuf>, point: Option<&str>) {
    daemon.stop();
    daemon.binary = binary;
    daemon.env = point.map(|p| vec![(berth::crash::VARIABLE.to_string(), p.to_string())]).unwrap_or_default();
    daemon.spawn();
}

fn state_of(docker: &DockerWorld, name: &str) -> String {
    let inspect = docker.docker(&["inspect", "-f", "{{.State.Status}}", name]);
    if inspect.success() { inspect.stdout.trim().to_string() } else { "absent".into() }
}

/// Before the operation: what it needs.
fn set_up(docker: &DockerWorld, operation: Operation) {
    if operation != Operation::Create {
        docker.docker(&CREATE).ok();
    }
}

fn perform(docker: &DockerWorld, operation: Operation) -> bool {
    let outcome = match operation {
        Operation::Create => docker.docker(&CREATE),
        Operation::Start => docker.docker(&["start", VICTIM]),
        Operation::Remove => docker.docker(&["rm", VICTIM]),
    };
    outcome.success()
}

/// After recovery: the victim as the operation's undoing or finishing leaves it.
fn check_settled(docker: &DockerWorld, operation: Operation, point: &str) {
    let expected = match operation {
        Operation::Create | Operation::Remove => "absent",
        Operation::Start => "created",
    };
    assert_eq!(state_of(docker, VICTIM), expected, "{point}: the victim after recovery");
}

/// The operation again, then the victim removed.
fn retry_and_clean(docker: &DockerWorld, operation: Operation, point: &str) {
    match operation {
        Operation::Create => {
            docker.docker(&CREATE).ok();
        }
        Operation::Start => {
            docker.docker(&["start", VICTIM]).ok();
            assert_eq!(state_of(docker, VICTIM), "running", "{point}: the retried start");
        }
        Operation::Remove => {}
    }
    if operation != Operation::Remove {
        docker.docker(&["rm", "-f", VICTIM]).ok();
    }
}

/// The kernel's view once it equals `expected` (endpoints of a stopped container are
/// given back by a task berthd starts as it comes up), or the differences after 10 s.
fn settled_view(daemon: &Berthd, expected: &KernelView, context: &str) {
    for _ in 0..100 {
        if KernelView::take(daemon) == *expected {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    KernelView::take(daemon).assert_same(expected, context);
}

fn survivor_running(docker: &DockerWorld, point: &str) {
    assert_eq!(state_of(docker, "survivor"), "running", "{point}: the survivor");
}

#[test]
fn a_daemon_killed_at_every_docker_crash_point_recovers_to_a_clean_state() {
    let crash_binary = crash_berthd();
    let mut docker = DockerWorld::new();
    let helpers = format!("shim_binary = {:?}\npod_init_binary = {:?}\n", bin_path("berth-shim"), bin_path("berth-pod-init"));
    docker.world.daemon.extra_config = format!("{helpers}{}", docker.world.daemon.extra_config);
    restart(&mut docker.world.daemon, None, None);
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["run", "-d", "--name", "survivor", "busybox", "sleep", "1000"]).ok();
    let baseline = KernelView::take(&docker.world.daemon);
    let points: Vec<&str> = berth::crash::POINTS.iter().copied().filter(|p| p.starts_with("docker.")).collect();
    assert!(!points.is_empty(), "the docker crash points");
    for point in &points {
        let operation = operation_of(point);
        restart(&mut docker.world.daemon, Some(crash_binary.clone()), Some(point));
        set_up(&docker, operation);
        let before = KernelView::take(&docker.world.daemon);
        assert!(!perform(&docker, operation), "{point}: the operation completed: the point was never reached");
        let status = docker.world.daemon.wait_for_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("{point}: berthd did not die"));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: berthd ended otherwise: {status:?}");
        restart(&mut docker.world.daemon, None, None);
        survivor_running(&docker, point);
        check_settled(&docker, operation, point);
        // Undone (a create, a start): what the kernel held before; finished (a removal):
        // nothing of the victim.
        let expected = if operation == Operation::Remove { &baseline } else { &before };
        settled_view(&docker.world.daemon, expected, &format!("{point}: after recovery"));
        retry_and_clean(&docker, operation, point);
        survivor_running(&docker, point);
        settled_view(&docker.world.daemon, &baseline, &format!("{point}: after the retry and the removal"));
    }
    docker.docker(&["rm", "-f", "survivor"]).ok();
}
