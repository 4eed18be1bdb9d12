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

/// Read when the test runs (not built in), so that the script is one file to edit.
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker_py_client.py");

/// A venv with docker-py from PyPI, in `dir`.
fn python_with_docker_py(dir: &Path) -> String {
    let venv = dir.join("venv");
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    run_command(make, Duration::from_secs(120)).ok();
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--quiet", "docker>=7.1"]);
    run_command(pip, Duration::from_secs(300)).ok();
    venv.join("bin/python").display().to_string()
}

#[test]
fn docker_py_runs_execs_copies_lists_and_follows_events() {
    let docker = DockerWorld::new();
    let python = python_with_docker_py(docker.config_dir.path());
    let script = Path::new(CLIENT);
    let mut command = Command::new(python);
    command.arg(script).env("DOCKER_HOST", format!("unix://{}", docker.socket().display())).env("DOCKER_CONFIG", docker.config_dir.path());
    let output = run_command(command, Duration::from_secs(240));
    assert!(output.success() && output.stdout.contains("all passed"), "{output}");
    let checks = output.stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(checks >= 60, "only {checks} checks ran: {output}");
    assert_eq!(docker.docker(&["ps", "-a", "-q"]).ok().stdout, "", "docker-py left containers");
}
