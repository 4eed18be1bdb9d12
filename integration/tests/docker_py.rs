//! docker-py, the Python SDK from PyPI, against berthd's Docker socket: a venv that
//! the test makes, and a script (`docker_py_client.py`) that runs containers attached
//! and detached, reads logs, waits, execs (demuxed, streamed, TTY, raw socket), copies
//! files in and out through the archive endpoints, lists with filters, follows events,
//! removes, and pulls, tags and removes images; each check prints `ok NAME`.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_integration::command::run_command;
use berth_integration::docker::DockerWorld;
use berth_integration::pypi::Venv;

/// Read when the test runs (not built in), so that the script is one file to edit.
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker_py_client.py");

#[test]
fn docker_py_runs_execs_copies_lists_and_follows_events() {
    let docker = DockerWorld::new();
    let python = Venv::with("docker-py", &["docker>=7.1"]).python();
    let script = Path::new(CLIENT);
    let mut command = Command::new(python);
    command.arg(script).env("DOCKER_HOST", format!("unix://{}", docker.socket().display())).env("DOCKER_CONFIG", docker.config_dir.path());
    let output = run_command(command, Duration::from_secs(240));
    assert!(output.success() && output.stdout.contains("all passed"), "{output}");
    let checks = output.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(checks >= 60, "only {checks} checks ran: {output}");
    assert_eq!(docker.docker(&["ps", "-a", "-q"]).ok().stdout, "", "docker-py left containers");
}
