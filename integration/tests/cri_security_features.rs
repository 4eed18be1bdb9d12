//! The CRI features critest checks once a runtime reports them: the supplemental groups
//! policy (Merge and Strict) with the effective identity in ContainerStatus, recursive
//! read-only mounts (and the combinations refused), and pods with a user namespace of
//! their own, whose image layers are idmapped so that the container's root owns them.

use std::os::unix::fs::MetadataExt;

use berth_integration::cri::*;
use berth_integration::images::{Layer, LayerBuilder, TestImage};
use k8s_cri::v1 as cri;

const GROUPS_IMAGE: &str = "docker.io/library/groups:latest";

/// busybox whose /etc/group puts uid 1000 in group 50000, with user 1000 by default.
fn groups_image() -> TestImage {
    let mut layer = LayerBuilder::new()
        .busybox()
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home:/bin/sh\n", 0o644)
        .file("etc/group", b"root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n", 0o644);
    for applet in ["sh", "id", "sleep", "cat"] {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    let mut image = TestImage::new(vec![Layer::gzip(layer)]);
    image.config["config"]["User"] = serde_json::json!("1000");
    image
}

fn security(context: cri::LinuxContainerSecurityContext) -> Option<cri::LinuxContainerConfig> {
    Some(cri::LinuxContainerConfig { security_context: Some(context), ..Default::default() })
}

async fn handler_features(client: &mut RuntimeServiceClient) -> (cri::RuntimeHandlerFeatures, bool) {
    let status = client.status(cri::StatusRequest { verbose: false }).await.expect("status").into_inner();
    let default = status.runtime_handlers.iter().find(|h| h.name.is_empty()).expect("the default handler").features.clone().expect("features");
    (default, status.features.expect("runtime features").supplemental_groups_policy)
}

type RuntimeServiceClient = k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

#[test]
fn supplemental_groups_policy_merge_and_strict() {
    let world = World::new();
    groups_image().push(&world.registry, "library/groups", "latest");
    let logs = world.daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        let (_, policy_supported) = handler_features(&mut client).await;
        assert!(policy_supported, "the runtime reports no supplemental groups policy");
        let mut images = world.daemon.images().await;
        let request = cri::PullImageRequest { image: Some(cri::ImageSpec { image: GROUPS_IMAGE.into(), ..Default::default() }), ..Default::default() };
        images.pull_image(request).await.expect("pull");
        let pod_config = pod_config("groups", logs.to_str().unwrap());
        let pod = run_pod(&mut client, &pod_config).await;
        for (policy, expected) in [(cri::SupplementalGroupsPolicy::Merge, vec![1000, 1234, 50000]), (cri::SupplementalGroupsPolicy::Strict, vec![1000, 1234])] {
            let mut config = container_config(&format!("{policy:?}").to_lowercase(), &["sleep", "1000"]);
            config.image = Some(cri::ImageSpec { image: GROUPS_IMAGE.into(), ..Default::default() });
            config.linux = security(cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: 1000 }),
                supplemental_groups: vec![1234],
                supplemental_groups_policy: policy as i32,
                ..Default::default()
            });
            let id = start_container(&mut client, &pod, &pod_config, config).await;
            let user = status(&mut client, &id).await.user.and_then(|u| u.linux).expect("the effective user in the status");
            assert_eq!((user.uid, user.gid, user.supplemental_groups.clone()), (1000, 1000, expected.clone()), "{policy:?}");
            let groups = exec(&mut client, &id, &["id", "-G"]).await;
            let want: Vec<String> = expected.iter().map(|g| g.to_string()).collect();
            assert_eq!(String::from_utf8_lossy(&groups.stdout).trim(), want.join(" "), "{policy:?}: {groups:?}");
        }
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove");
    });
}

/// A host directory with a tmpfs mounted inside it; unmounted and removed on drop.
struct HostDirWithSubmount {
    dir: std::path::PathBuf,
}

impl HostDirWithSubmount {
    fn new(parent: &std::path::Path) -> HostDirWithSubmount {
        let dir = parent.join("rro-source");
        std::fs::create_dir_all(dir.join("tmpfs")).expect("mkdir");
        nix::mount::mount(Some("none"), &dir.join("tmpfs"), Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).expect("mount tmpfs");
        HostDirWithSubmount { dir }
    }
}

impl Drop for HostDirWithSubmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir.join("tmpfs"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn recursive_read_only_mounts() {
    let world = World::new();
    let logs = world.daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let source = HostDirWithSubmount::new(world.daemon.dir.path());
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        let (features, _) = handler_features(&mut client).await;
        assert!(features.recursive_read_only_mounts, "{features:?}");
        pull(&world.daemon).await;
        let pod_config = pod_config("rro", logs.to_str().unwrap());
        let pod = run_pod(&mut client, &pod_config).await;
        let mount = |recursive: bool, readonly: bool, propagation: cri::MountPropagation| cri::Mount {
            container_path: "/mnt".into(),
            host_path: source.dir.display().to_string(),
            readonly,
            recursive_read_only: recursive,
            propagation: propagation as i32,
            ..Default::default()
        };
        // Read-only only at the top: the tmpfs below stays writable; recursive: it is not.
        for (name, recursive, touch_works) in [("plain", false, true), ("recursive", true, false)] {
            let mut config = container_config(name, &["sleep", "1000"]);
            config.mounts = vec![mount(recursive, true, cri::MountPropagation::PropagationPrivate)];
            let id = start_container(&mut client, &pod, &pod_config, config).await;
            let touched = exec(&mut client, &id, &["sh", "-c", &format!("touch /mnt/tmpfs/{name}")]).await;
            assert_eq!(touched.exit_code == 0, touch_works, "{name}: {touched:?}");
            if !touch_works {
                assert!(String::from_utf8_lossy(&touched.stderr).contains("Read-only file system"), "{touched:?}");
            }
            let top = exec(&mut client, &id, &["sh", "-c", "touch /mnt/top"]).await;
            assert_ne!(top.exit_code, 0, "{name}: the mount's top is writable");
            let status = status(&mut client, &id).await;
            assert_eq!(status.mounts.first().map(|m| m.recursive_read_only), Some(recursive));
        }
        // Refused: recursive but writable, or with propagation from the host.
        for (readonly, propagation) in [(false, cri::MountPropagation::PropagationPrivate), (true, cri::MountPropagation::PropagationHostToContainer), (true, cri::MountPropagation::PropagationBidirectional)] {
            let mut config = container_config("refused", &["sleep", "1000"]);
            config.mounts = vec![mount(true, readonly, propagation)];
            let request = cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
            let error = client.create_container(request).await.expect_err("an invalid recursive read-only mount");
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
            assert!(error.message().contains("recursive_read_only"), "{}", error.message());
        }
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("remove");
    });
}

fn userns_pod(name: &str, logs: &str, uids: Vec<cri::IdMapping>, mode: cri::NamespaceMode) -> cri::PodSandboxConfig {
    let mut config = pod_config(name, logs);
    let options = cri::NamespaceOption { userns_options: Some(cri::UserNamespace { mode: mode as i32, uids: uids.clone(), gids: uids }), ..Default::default() };
    config.linux = Some(cri::LinuxPodSandboxConfig { security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(options), ..Default::default() }), ..Default::default() });
    config
}

fn mapping(container_id: u32, host_id: u32, length: u32) -> cri::IdMapping {
    cri::IdMapping { container_id, host_id, length }
}

#[test]
fn a_pod_with_its_own_user_namespace() {
    let world = World::new();
    let logs = world.daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    runtime().block_on(async {
        let mut client = world.daemon.runtime().await;
        let (features, _) = handler_features(&mut client).await;
        assert!(features.user_namespaces, "{features:?}");
        pull(&world.daemon).await;
        let pod_config = userns_pod("userns", logs.to_str().unwrap(), vec![mapping(0, 200000, 65536)], cri::NamespaceMode::Pod);
        let pod = run_pod(&mut client, &pod_config).await;
        let mut config = container_config("inside", &["sleep", "1000"]);
        config.linux = security(cri::LinuxContainerSecurityContext { namespace_options: pod_config.linux.clone().and_then(|l| l.security_context).and_then(|s| s.namespace_options), ..Default::default() });
        let id = start_container(&mut client, &pod, &pod_config, config).await;

        // The kernel's view: the container's maps, and every pod namespace owned by them.
        let pid = pid_of(&mut client, &id).await;
        let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
        assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", "200000", "65536"]);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("200000")), "{status}");
        let pinned = world.daemon.state().join("sandboxes").join(&pod).join("user");
        assert_eq!(std::fs::metadata(format!("/proc/{pid}/ns/user")).expect("ns").ino(), std::fs::metadata(&pinned).expect("pinned userns").ino());

        // The image's files belong to the container's root, and its root can write.
        let owners = exec(&mut client, &id, &["sh", "-c", "stat -c %u:%g /bin/busybox /; cat /proc/self/uid_map; echo written > /created && cat /created"]).await;
        let out = String::from_utf8_lossy(&owners.stdout).into_owned();
        assert_eq!(owners.exit_code, 0, "{owners:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..2], ["0:0", "0:0"], "{out}");
        assert!(lines[2].split_whitespace().eq(["0", "200000", "65536"]), "{out}");
        assert_eq!(lines[3], "written");
        let container = status_of(&mut client, &id).await;
        assert_eq!(container, cri::ContainerState::ContainerRunning as i32);
        let upper = find_file(&world.daemon.root(), "created").expect("the file in the container's upper layer");
        assert_eq!((std::fs::metadata(&upper).expect("meta").uid(), std::fs::metadata(&upper).expect("meta").gid()), (200000, 200000));

        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("stop");
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("remove");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(&pod) && !mounts.contains("idmapped-layers"), "a mount of the pod is left:\n{mounts}");

        // Refused: two ranges, a map without the container's root, other modes.
        let refused = [
            userns_pod("two", "", vec![mapping(0, 200000, 100), mapping(100, 300000, 100)], cri::NamespaceMode::Pod),
            userns_pod("noroot", "", vec![mapping(1, 200000, 100)], cri::NamespaceMode::Pod),
            userns_pod("container", "", vec![], cri::NamespaceMode::Container),
            userns_pod("target", "", vec![], cri::NamespaceMode::Target),
        ];
        for config in refused {
            let request = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
            let error = client.run_pod_sandbox(request).await.expect_err("a refused user namespace");
            assert_eq!(error.code(), tonic::Code::InvalidArgument, "{config:?}: {error:?}");
        }
        let left = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.expect("list").into_inner().items;
        assert!(left.is_empty(), "{left:?}");
    });
}

async fn status_of(client: &mut RuntimeServiceClient, id: &str) -> i32 {
    status(client, id).await.state
}

/// The first file named `name` below `dir`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_dir() && !kind.is_symlink() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}
