//! Docker's named volumes through the real docker CLI: create, ls with filters, inspect,
//! rm (refused while in use), prune; data kept across containers; the first-use copy of
//! the image's content (symlinks kept as links, modes kept, `nocopy`); anonymous volumes
//! for an image's `VOLUME`, removed by `rm -v` and `--rm`; a tmpfs volume mounted on the
//! host while it exists; events. Checked on the host through the volume's directory and
//! `/proc/self/mountinfo`.
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use berth_integration::docker::DockerWorld;

fn names(docker: &DockerWorld, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["volume", "ls", "--format", "{{.Name}}"];
    args.extend_from_slice(extra);
    docker.docker(&args).ok().stdout.lines().map(str::to_string).collect()
}

fn mountpoint(docker: &DockerWorld, name: &str) -> PathBuf {
    PathBuf::from(docker.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", name]).ok().stdout.trim())
}

fn mounted(path: &std::path::Path) -> bool {
    let wanted = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

#[test]
fn named_volumes_keep_data_and_are_not_removed_in_use() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    assert_eq!(docker.docker(&["volume", "create", "--label", "team=a", "data1"]).ok().stdout.trim(), "data1");
    docker.docker(&["volume", "create", "other"]).ok();
    assert_eq!(names(&docker, &["--filter", "label=team=a"]), ["data1"]);
    assert_eq!(names(&docker, &[]).len(), 2);
    let data = mountpoint(&docker, "data1");
    assert!(data.is_dir() && data.ends_with("volumes/data1/_data"), "{}", data.display());

    docker.docker(&["run", "--rm", "-v", "data1:/data", "busybox", "sh", "-c", "echo kept > /data/f"]).ok();
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap_or_default(), "kept\n");
    let read_back = docker.docker(&["run", "--rm", "-v", "data1:/data:ro", "busybox", "sh", "-c", "cat /data/f; echo x > /data/g"]);
    assert_ne!(read_back.code, 0, "a read-only volume was written: {read_back}");
    assert!(read_back.stdout.starts_with("kept") && read_back.stderr.contains("Read-only file system"), "{read_back}");

    let user = docker.docker(&["run", "-d", "--name", "user", "-v", "data1:/data", "busybox", "sleep", "300"]).ok().stdout.trim().to_string();
    let inspect = docker.docker(&["inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}", "user"]).ok();
    assert_eq!(inspect.stdout.trim(), "volume data1 /data true", "{inspect}");
    let refused = docker.docker(&["volume", "rm", "data1"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("volume is in use") && refused.stderr.contains(&user), "{refused}");
    assert_eq!(names(&docker, &["--filter", "dangling=true"]), ["other"]);
    docker.docker(&["rm", "-f", "user"]).ok();
    docker.docker(&["volume", "rm", "data1"]).ok();
    assert!(!data.exists(), "the volume's data is still there");

    let missing = docker.docker(&["volume", "inspect", "data1"]);
    assert!(missing.code != 0 && missing.stderr.contains("no such volume"), "{missing}");
    let short = docker.docker(&["volume", "create", "a"]);
    assert!(short.code != 0 && short.stderr.contains("volume name is too short"), "{short}");
    let escaping = docker.docker(&["run", "--rm", "-v", "x@y:/data", "busybox", "true"]);
    assert!(escaping.code != 0 && escaping.stderr.contains("invalid characters for a local volume name"), "{escaping}");
    // As dockerd: `-v` makes a missing host directory.
    let made = std::env::temp_dir().join(format!("berth-bind-made-{}", std::process::id()));
    let bind = format!("{}:/made", made.display());
    docker.docker(&["run", "--rm", "-v", &bind, "busybox", "sh", "-c", "echo in > /made/f"]).ok();
    assert_eq!(std::fs::read_to_string(made.join("f")).unwrap_or_default(), "in\n");
    let _ = std::fs::remove_dir_all(&made);
    let plugin = docker.docker(&["volume", "create", "--driver", "nfs-plugin", "vol2"]);
    assert!(plugin.code != 0 && plugin.stderr.contains("plugin \"nfs-plugin\" not found"), "{plugin}");
    // A create that fails on its image makes no volume.
    let no_image = docker.docker(&["create", "-v", "never:/data", "no-such-image:1"]);
    assert_ne!(no_image.code, 0);
    assert!(!names(&docker, &[]).contains(&"never".to_string()));

    docker.docker(&["volume", "rm", "other"]).ok();
}

#[test]
fn image_content_is_copied_into_new_volumes_and_anonymous_volumes_go_with_rm_v() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let seed = "mkdir -p /seed/sub && echo seeded > /seed/sub/file && chmod 0750 /seed/sub && ln -s /etc/passwd /seed/link";
    docker.docker(&["run", "--name", "maker", "busybox", "sh", "-c", seed]).ok();
    docker.docker(&["commit", "--change", "VOLUME /seed", "maker", "seeded:1"]).ok();
    docker.docker(&["rm", "maker"]).ok();
    let before = names(&docker, &[]);
    assert!(before.is_empty(), "{before:?}");

    // A new named volume gets the image's content, links as links, modes kept.
    let listing = docker.docker(&["run", "--rm", "-v", "seedvol:/seed", "seeded:1", "cat", "/seed/sub/file"]).ok();
    assert_eq!(listing.stdout, "seeded\n");
    let data = mountpoint(&docker, "seedvol");
    assert_eq!(std::fs::read_link(data.join("link")).ok(), Some(PathBuf::from("/etc/passwd")));
    let mode = std::fs::metadata(data.join("sub")).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0);
    assert_eq!(mode, 0o750);
    // `nocopy` leaves it empty; an existing volume is not copied into again.
    docker.docker(&["run", "--rm", "-v", "seedvol:/seed", "seeded:1", "busybox", "rm", "/seed/sub/file"]).ok();
    let again = docker.docker(&["run", "--rm", "-v", "seedvol:/seed", "seeded:1", "ls", "/seed/sub"]).ok();
    assert_eq!(again.stdout, "");
    let empty = docker.docker(&["run", "--rm", "-v", "bare:/seed:nocopy", "seeded:1", "ls", "-A", "/seed"]).ok();
    assert_eq!(empty.stdout, "");

    // The image's VOLUME makes an anonymous volume, seeded too; `rm -v` removes it.
    let output = docker.docker(&["run", "--name", "anon", "seeded:1", "cat", "/seed/sub/file"]).ok();
    assert_eq!(output.stdout, "seeded\n");
    let anonymous = docker.docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "anon"]).ok().stdout.trim().to_string();
    assert_eq!(anonymous.len(), 64, "{anonymous}");
    let label = docker.docker(&["volume", "inspect", "-f", "{{json .Labels}}", &anonymous]).ok();
    assert!(label.stdout.contains("com.docker.volume.anonymous"), "{label}");
    docker.docker(&["rm", "-v", "anon"]).ok();
    assert!(!names(&docker, &[]).contains(&anonymous), "rm -v kept the anonymous volume");
    // `--rm` removes the anonymous volume too; named volumes stay.
    docker.docker(&["run", "--rm", "seeded:1", "true"]).ok();
    let mut left = names(&docker, &[]);
    left.sort();
    assert_eq!(left, ["bare", "seedvol"]);

    // prune removes anonymous volumes only, unless --all.
    docker.docker(&["run", "--name", "keeps-anon", "seeded:1", "true"]).ok();
    docker.docker(&["rm", "keeps-anon"]).ok();
    assert_eq!(names(&docker, &[]).len(), 3);
    docker.docker(&["volume", "prune", "-f"]).ok();
    assert_eq!(names(&docker, &[]).len(), 2);
    let pruned = docker.docker(&["volume", "prune", "--all", "-f"]).ok();
    assert!(pruned.stdout.contains("bare") && pruned.stdout.contains("seedvol"), "{pruned}");
    assert!(names(&docker, &[]).is_empty());
}

#[test]
fn tmpfs_volume_is_mounted_while_it_exists_and_events_are_published() {
    let docker = DockerWorld::new();
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    docker.docker(&["volume", "create", "--opt", "type=tmpfs", "--opt", "o=size=1m", "scratch"]).ok();
    let data = mountpoint(&docker, "scratch");
    assert!(mounted(&data), "the tmpfs volume is not mounted on the host");
    let seen = docker.docker(&["run", "--rm", "-v", "scratch:/s", "busybox", "sh", "-c", "echo hi > /s/f && grep ' /s ' /proc/mounts"]).ok();
    assert!(seen.stdout.starts_with("tmpfs /s tmpfs"), "{seen}");
    let bad = docker.docker(&["volume", "create", "--opt", "type=nfs", "--opt", "o=addr=127.0.0.1", "remote"]);
    assert!(bad.code != 0 && bad.stderr.contains("nfs"), "{bad}");
    docker.docker(&["volume", "rm", "scratch"]).ok();
    assert!(!mounted(&data), "the tmpfs volume's mount is left");

    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 1).to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let events = docker.docker(&["events", "--since", &since, "--until", &until, "--filter", "type=volume", "--format", "{{.Action}} {{.Actor.ID}}"]).ok();
    let actions: Vec<&str> = events.stdout.lines().collect();
    assert!(actions.contains(&"create scratch") && actions.contains(&"destroy scratch"), "{events}");
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[test]
fn volume_mount_and_unmount_events_carry_dockerd_attributes() {
    let docker = DockerWorld::new();
    docker.docker(&["pull", "-q", "busybox"]).ok();
    let since = unix_seconds().to_string();
    let run = docker.docker(&["run", "-d", "--name", "user", "-v", "evdata:/data", "-v", "evro:/ro:ro", "-v", "/tmp:/hosttmp", "busybox", "sleep", "300"]).ok();
    let id = run.stdout.trim().to_string();
    docker.docker(&["stop", "-t", "1", "user"]).ok();
    docker.docker(&["rm", "user"]).ok();
    docker.docker(&["volume", "rm", "evdata", "evro"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let until = (unix_seconds() + 1).to_string();
    let format = "{{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}";
    let events = docker.docker(&["events", "--since", &since, "--until", &until, "--filter", "type=volume", "--format", format]).ok();
    let lines: Vec<&str> = events.stdout.lines().collect();
    let position = |wanted: &str| lines.iter().position(|line| *line == wanted).unwrap_or_else(|| panic!("no {wanted:?} in {events}"));
    let created = position(r#"create evdata {"driver":"local"}"#);
    let mounted = position(&format!(r#"mount evdata {{"container":"{id}","destination":"/data","driver":"local","propagation":"","read/write":"true"}}"#));
    position(&format!(r#"mount evro {{"container":"{id}","destination":"/ro","driver":"local","propagation":"","read/write":"false"}}"#));
    let unmounted = position(&format!(r#"unmount evdata {{"container":"{id}","driver":"local"}}"#));
    position(&format!(r#"unmount evro {{"container":"{id}","driver":"local"}}"#));
    let destroyed = position(r#"destroy evdata {"driver":"local"}"#);
    assert!(created < mounted && mounted < unmounted && unmounted < destroyed, "out of order: {events}");
    assert_eq!(lines.len(), 8, "a bind mount is no volume, and each volume has four events: {events}");

    let only = docker.docker(&["events", "--since", &since, "--until", &until, "--filter", "volume=evdata", "--filter", "event=mount", "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}"]).ok();
    assert_eq!(only.stdout, "volume mount evdata\n", "{only}");
    // The container's own events sit around the volume's: mount before start, unmount after die.
    let all = docker.docker(&["events", "--since", &since, "--until", &until, "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}"]).ok();
    let order: Vec<&str> = all.stdout.lines().collect();
    let at = |wanted: String| order.iter().position(|line| *line == wanted).unwrap_or_else(|| panic!("no {wanted:?} in {all}"));
    assert!(at("volume mount evdata".into()) < at(format!("container start {id}")), "{all}");
    assert!(at(format!("container die {id}")) < at("volume unmount evdata".into()), "{all}");
    assert!(names(&docker, &[]).is_empty(), "a volume is left");
}
