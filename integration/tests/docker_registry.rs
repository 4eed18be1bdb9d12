//! `docker login` against a registry with htpasswd basic auth (checked by berthd with
//! the registry, refused with the registry's answer), then pull and push with the
//! credentials the CLI keeps and sends as X-Registry-Auth; `docker logout` and the
//! registry refuses again; `rmi --no-prune`.
use berth_integration::berthd::Berthd;
use berth_integration::cri::{busybox_image, World};
use berth_integration::docker::DockerWorld;
use berth_integration::registry::{Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

fn private_registry_world() -> DockerWorld {
    let registry = Registry::start(Auth::Basic { username: "tester".into(), password: "secret".into() });
    busybox_image().push(&registry, "team/busybox", "latest");
    let config = format!("[registry.\"{ADDRESS}\"]\ninsecure = true\n");
    let daemon = Berthd::start_in(&registry.netns.path(), &config);
    DockerWorld { world: World { daemon, registry }, config_dir: TempDir::new("docker-config") }
}

#[test]
fn login_then_pull_and_push_with_the_kept_credentials() {
    let docker = private_registry_world();
    let image = format!("{ADDRESS}/team/busybox");
    let anonymous = docker.docker(&["pull", &image]).failed();
    assert!(anonymous.stderr.to_lowercase().contains("unauthorized") || anonymous.stderr.contains("401"), "{anonymous}");

    let wrong = docker.docker_with_input(&["login", "-u", "tester", "--password-stdin", ADDRESS], "wrong\n").failed();
    assert!(wrong.stderr.contains("login attempt to http://127.0.0.1:5000/v2/ failed with status: 401 Unauthorized"), "{wrong}");
    assert!(!docker.config_dir.path().join("config.json").exists() || !std::fs::read_to_string(docker.config_dir.path().join("config.json")).unwrap_or_default().contains(ADDRESS));

    let login = docker.docker_with_input(&["login", "-u", "tester", "--password-stdin", ADDRESS], "secret\n").ok();
    assert!(login.stdout.contains("Login Succeeded"), "{login}");
    let pulled = docker.docker(&["pull", &image]).ok();
    assert!(pulled.stdout.contains(&format!("Status: Downloaded newer image for {image}:latest")), "{pulled}");
    assert_eq!(docker.docker(&["run", "--rm", &image, "echo", "private"]).ok().stdout, "private\n");

    let pushed_name = format!("{ADDRESS}/team/pushed:v1");
    docker.docker(&["tag", &image, &pushed_name]).ok();
    let pushed = docker.docker(&["push", &pushed_name]).ok();
    assert!(pushed.stdout.contains("v1: digest: sha256:"), "{pushed}");
    let removed = docker.docker(&["rmi", "--no-prune", &pushed_name]).ok();
    assert!(removed.stdout.contains(&format!("Untagged: {pushed_name}")), "{removed}");
    docker.docker(&["pull", "-q", &pushed_name]).ok();

    docker.docker(&["logout", ADDRESS]).ok();
    docker.docker(&["rmi", &pushed_name, &image]).ok();
    let after_logout = docker.docker(&["pull", &pushed_name]).failed();
    assert!(after_logout.stderr.to_lowercase().contains("unauthorized") || after_logout.stderr.contains("401"), "{after_logout}");
    let images = docker.docker(&["images", "-q"]).ok();
    assert_eq!(images.stdout, "", "a refused pull left an image: {images}");
}
