//! Docker façade fixtures: berthd beside a registry holding busybox (pulled through
//! the docker.io mirror), and the real docker CLI pointed at berthd's Docker socket
//! with a private config directory; and [`DockerClient`], what a fixture that drives
//! the CLI against some daemon (berthd here, dockerd in [`crate::dockerd`]) offers.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::command::{run_command, CmdOutput};
use crate::cri::World;
use crate::registry::Registry;
use crate::tempdir::TempDir;

pub const DOCKER: &str = "/usr/local/bin/docker";

pub struct DockerWorld {
    pub world: World,
    pub config_dir: TempDir,
}

impl DockerWorld {
    pub fn new() -> DockerWorld {
        DockerWorld { world: World::new(), config_dir: TempDir::new("docker-config") }
    }

    pub fn socket(&self) -> PathBuf {
        self.world.daemon.docker_socket()
    }

    /// The network namespace berthd (and the registry) run in.
    pub fn netns(&self) -> String {
        self.world.registry.netns.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        DockerClient::command(self, args)
    }

    /// Runs the docker CLI to completion (60 s at most).
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        DockerClient::docker(self, args)
    }

    /// Runs the docker CLI with `input` on its stdin.
    pub fn docker_with_input(&self, args: &[&str], input: &str) -> CmdOutput {
        let file = self.config_dir.path().join("stdin");
        std::fs::write(&file, input).expect("write stdin");
        let line = std::iter::once(DOCKER).chain(args.iter().copied()).map(shell_quote).collect::<Vec<_>>().join(" ");
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("{line} < {}", shell_quote(&file.display().to_string())));
        command.env("DOCKER_HOST", format!("unix://{}", self.socket().display())).env("DOCKER_CONFIG", self.config_dir.path());
        run_command(command, Duration::from_secs(60))
    }

    /// Runs the docker CLI under a pseudo-terminal (`script`), feeding it `input`.
    pub fn docker_in_terminal(&self, args: &[&str], input: &str) -> CmdOutput {
        let line = std::iter::once(DOCKER).chain(args.iter().copied()).map(shell_quote).collect::<Vec<_>>().join(" ");
        let file = self.config_dir.path().join("tty-input");
        std::fs::write(&file, input).expect("write input");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("(sleep 1; cat {}) | script -qefc {} /dev/null", shell_quote(&file.display().to_string()), shell_quote(&line)))
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.config_dir.path());
        run_command(command, Duration::from_secs(60))
    }

    /// `docker inspect -f FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.docker(&["inspect", "-f", format, name]).ok().stdout.trim().to_string()
    }

    /// Polls [`DockerWorld::inspect`] until it prints `wanted` or `limit` passes; what it printed last.
    pub fn wait_for_inspect(&self, name: &str, format: &str, wanted: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let seen = self.inspect(name, format);
            if seen == wanted || std::time::Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs a shell snippet in berthd's network namespace (the host side of it).
    pub fn in_netns(&self, script: &str) -> CmdOutput {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.netns())).arg("sh").arg("-c").arg(script);
        run_command(command, Duration::from_secs(30))
    }
}

/// A docker CLI pointed at one daemon's socket, with a private config directory, and
/// the registry that daemon pulls docker.io images from.
pub trait DockerClient {
    fn socket(&self) -> PathBuf;
    fn config_path(&self) -> &Path;
    fn registry(&self) -> &Registry;

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(DOCKER);
        command.args(args).env("DOCKER_HOST", format!("unix://{}", self.socket().display())).env("DOCKER_CONFIG", self.config_path()).env_remove("DOCKER_CONTEXT");
        command
    }

    /// Runs the docker CLI to completion (60 s at most).
    fn docker(&self, args: &[&str]) -> CmdOutput {
        run_command(DockerClient::command(self, args), Duration::from_secs(60))
    }
}

impl DockerClient for DockerWorld {
    fn socket(&self) -> PathBuf {
        self.world.daemon.docker_socket()
    }
    fn config_path(&self) -> &Path {
        self.config_dir.path()
    }
    fn registry(&self) -> &Registry {
        &self.world.registry
    }
}

impl Default for DockerWorld {
    fn default() -> Self {
        DockerWorld::new()
    }
}

pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
