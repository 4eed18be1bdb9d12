//! Pulling from a real registry (Debian's docker-registry in the test's own network
//! namespace) and checking what was unpacked by mounting the overlay and reading it:
//! whiteouts, opaque directories, ownership, modes, times, xattrs, hard links, symlinks,
//! device nodes; gzip, zstd and plain layers; image metadata; an index with two
//! platforms; concurrent pulls; mirrors; remove and garbage collection; active
//! snapshots as GC references.
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth::image::{ImageError, LayerState};
use berth_integration::images::{self, assert_empty, local_config, open_service, Compression, Layer, LayerBuilder, Mounted, TestImage};
use berth_integration::registry::{in_netns, runtime, Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

/// Three layers: busybox and files (gzip), deletions and replacements (zstd), an
/// opaque directory (uncompressed).
fn layered_image() -> TestImage {
    let base = LayerBuilder::new()
        .busybox()
        .dir("data", 0o755)
        .file("data/a", b"a", 0o644)
        .file("data/b", b"b", 0o644)
        .dir("gone", 0o755)
        .file("gone/file", b"x", 0o644)
        .file("etc/hosts", b"old\n", 0o644)
        .dir("home", 0o755)
        .dir("home/user", 0o700)
        .owned_file("home/user/file", b"mine", 0o640, 1000, 1000)
        .file("bin/setuid", b"#!", 0o4755)
        .file_with_xattr("etc/tagged", b"t", "user.berth", "yes")
        .dir("dev", 0o755)
        .char_device("dev/null", 1, 3);
    let changes = LayerBuilder::new()
        .whiteout("data/a")
        .whiteout("gone")
        .file("etc/hosts", b"new\n", 0o644)
        .file("data/c", b"c", 0o644);
    let opaque = LayerBuilder::new().dir("data", 0o755).opaque("data").file("data/only", b"only", 0o644);
    TestImage::new(vec![
        Layer::new(&base.tar(), Compression::Gzip),
        Layer::new(&changes.tar(), Compression::Zstd),
        Layer::new(&opaque.tar(), Compression::None),
    ])
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let name = std::ffi::CString::new(name).expect("name");
    let mut buffer = vec![0u8; 256];
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
    (n >= 0).then(|| buffer[..n as usize].to_vec())
}

fn check_unpacked(root: &Path) {
    assert_eq!(names(&root.join("data")), ["only"], "opaque dir hides the lower layers");
    assert!(!root.join("gone").exists(), "a whited-out directory is gone");
    assert_eq!(std::fs::read(root.join("etc/hosts")).unwrap(), b"new\n");
    assert_eq!(std::fs::read_link(root.join("bin/sh")).unwrap(), Path::new("busybox"));
    let busybox = std::fs::metadata(root.join("bin/busybox")).unwrap();
    let ls = std::fs::metadata(root.join("bin/ls")).unwrap();
    assert_eq!((busybox.ino(), busybox.nlink()), (ls.ino(), 2), "hard link kept");
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o755);
    assert_eq!(busybox.mtime(), 1_600_000_000);
    let owned = std::fs::metadata(root.join("home/user/file")).unwrap();
    assert_eq!((owned.uid(), owned.gid(), owned.permissions().mode() & 0o7777), (1000, 1000, 0o640));
    assert_eq!(std::fs::metadata(root.join("home/user")).unwrap().permissions().mode() & 0o7777, 0o700);
    assert_eq!(std::fs::metadata(root.join("bin/setuid")).unwrap().permissions().mode() & 0o7777, 0o4755);
    assert_eq!(xattr(&root.join("etc/tagged"), "user.berth").as_deref(), Some(&b"yes"[..]));
    let device = std::fs::metadata(root.join("dev/null")).unwrap();
    assert!(device.file_type().is_char_device());
    assert_eq!((libc::major(device.rdev()), libc::minor(device.rdev())), (1, 3));
}

#[test]
fn a_layered_image_unpacks_into_the_overlay_it_describes() {
    let registry = Registry::start(Auth::None);
    let image = layered_image();
    let pushed = image.push(&registry, "test/layered", "v1");
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let reference = format!("{ADDRESS}/test/layered:v1");
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1024);
    let pulled = in_netns(&registry.netns, || runtime().block_on(service.pull(&reference, None, Some(sender)))).expect("pull");

    assert_eq!(pulled.id, pushed.config_digest);
    assert_eq!(pulled.repo_tags, [reference.clone()]);
    assert_eq!(pulled.repo_digests, [format!("{ADDRESS}/test/layered@{}", pushed.manifest_digest)]);
    assert_eq!(pulled.diff_ids, image.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
    assert_eq!(pulled.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(pulled.config.cmd, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(pulled.config.entrypoint, Some(vec!["/bin/busybox".to_string()]));
    assert_eq!(pulled.config.working_dir.as_deref(), Some("/work"));
    assert_eq!(pulled.config.labels.as_ref().unwrap()["test"], "berth");
    assert!(pulled.config.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
    assert!(pulled.config.volumes.as_ref().unwrap().contains_key("/data"));
    assert_eq!(pulled.config.env.as_ref().unwrap()[1], "GREETING=hello");
    assert_eq!(pulled.history.len(), 3);
    let layer_bytes: u64 = image.layers.iter().map(|l| l.blob.len() as u64).sum();
    assert!(pulled.size > layer_bytes, "size counts layers, config and manifest");
    let mut states = Vec::new();
    while let Ok(update) = receiver.try_recv() {
        states.push(update);
    }
    for layer in &image.layers {
        let last = states.iter().rev().find(|u| u.layer == layer.digest).expect("progress for every layer");
        assert_eq!((last.state, last.done, last.total), (LayerState::Done, layer.blob.len() as u64, layer.blob.len() as u64));
    }
    assert_eq!(service.get(&pulled.id[7..19]).unwrap().id, pulled.id, "a short ID finds the image");
    assert_eq!(service.get(&pulled.repo_digests[0]).unwrap().id, pulled.id);

    let mounts = service.prepare_active("container-1", &reference).expect("prepare");
    assert_eq!(mounts.lowerdirs.len(), 3);
    {
        let mounted = Mounted::new(&mounts, &dir.path().join("rootfs"));
        check_unpacked(&mounted.target);
        std::fs::write(mounted.target.join("written"), b"w").unwrap();
    }
    assert_eq!(std::fs::read(mounts.upperdir.join("written")).unwrap(), b"w", "writes land in the active layer");
    let removed = service.remove(&reference).expect("remove");
    assert_eq!(removed.deleted.as_deref(), Some(pulled.id.as_str()));
    assert_eq!(service.get(&reference).unwrap_err().to_string(), ImageError::NotFound(reference.clone()).to_string());
    assert_eq!(service.snapshots().list().unwrap().len(), 4, "the active snapshot keeps its layers");
    {
        let mounted = Mounted::new(&service.active_mounts("container-1").unwrap(), &dir.path().join("rootfs"));
        check_unpacked(&mounted.target);
    }
    service.remove_active("container-1").expect("remove active");
    service.gc().expect("gc");
    assert_empty(&service);
}

#[test]
fn an_index_resolves_to_the_host_platform() {
    let registry = Registry::start(Auth::None);
    let host = TestImage::new(vec![Layer::gzip(LayerBuilder::new().busybox().file("arch", images::host_arch().as_bytes(), 0o644))]);
    let mut other = TestImage::new(vec![Layer::gzip(LayerBuilder::new().file("arch", b"s390x", 0o644))]);
    other.config["architecture"] = "s390x".into();
    let host_pushed = host.push(&registry, "test/multiarch", "host");
    let other_pushed = other.push(&registry, "test/multiarch", "other");
    let index = images::push_index(&registry, "test/multiarch", "v1", &[("s390x", &other_pushed), (images::host_arch(), &host_pushed)]);
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let reference = format!("{ADDRESS}/test/multiarch:v1");
    let pulled = in_netns(&registry.netns, || runtime().block_on(service.pull(&reference, None, None))).expect("pull");
    assert_eq!(pulled.id, host_pushed.config_digest);
    assert_eq!(pulled.manifest_digest, host_pushed.manifest_digest);
    assert_eq!(pulled.repo_digests, [format!("{ADDRESS}/test/multiarch@{index}")]);
    let chain = service.snapshots().get(pulled.top_chain_id.as_deref().unwrap()).unwrap().unwrap();
    assert_eq!(std::fs::read(service.snapshots().fs_dir(&chain).join("arch")).unwrap(), images::host_arch().as_bytes());
    assert!(!service.content().contains(&other_pushed.config_digest), "the other platform is not fetched");
}

#[test]
fn concurrent_pulls_share_the_work_and_a_repeat_pull_finds_everything() {
    let registry = Registry::start(Auth::None);
    let image = layered_image();
    image.push(&registry, "test/layered", "v1");
    image.push(&registry, "test/again", "v2");
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let first = format!("{ADDRESS}/test/layered:v1");
    let second = format!("{ADDRESS}/test/again:v2");
    let (a, b) = in_netns(&registry.netns, || {
        runtime().block_on(async { tokio::join!(service.pull(&first, None, None), service.pull(&second, None, None)) })
    });
    let (a, b) = (a.expect("first pull"), b.expect("second pull"));
    assert_eq!(a.id, b.id);
    assert_eq!(service.list().unwrap().len(), 1);
    assert_eq!(service.get(&first).unwrap().repo_tags.len(), 2, "one image, two names");
    assert_eq!(service.snapshots().list().unwrap().len(), 3, "each layer unpacked once");
    assert_eq!(service.content().list().unwrap().len(), 3 + 1 + 1, "layers, config, manifest");
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1024);
    in_netns(&registry.netns, || runtime().block_on(service.pull(&first, None, Some(sender)))).expect("repeat pull");
    let mut exists = 0;
    while let Ok(update) = receiver.try_recv() {
        assert!(matches!(update.state, LayerState::Waiting | LayerState::Exists), "{update:?}");
        exists += usize::from(update.state == LayerState::Exists);
    }
    assert_eq!(exists, 3);
    service.tag(&first, "berth.test/renamed:latest").expect("tag");
    assert_eq!(service.remove(&first).unwrap().deleted, None, "other names keep the image");
    assert_eq!(service.remove(&a.id).unwrap().untagged.len(), 4, "removing by ID drops every name");
    assert_empty(&service);
}

#[test]
fn mirrors_come_first_and_plain_http_needs_permission() {
    let registry = Registry::start(Auth::None);
    let image = TestImage::new(vec![Layer::gzip(LayerBuilder::new().busybox())]);
    image.push(&registry, "library/mirrored", "v1");
    let dir = TempDir::new("images");
    let config = berth::image::RegistryConfig::from_toml(&format!(
        "[pull]\nread_timeout_seconds = 5\n[registry.\"registry.berth.test\"]\nmirrors = [\"http://127.0.0.1:5999\", \"http://{ADDRESS}\"]\n"
    ))
    .unwrap();
    let service = open_service(dir.path(), config);
    let pulled = in_netns(&registry.netns, || runtime().block_on(service.pull("registry.berth.test/library/mirrored:v1", None, None)))
        .expect("pull through the second mirror");
    assert_eq!(pulled.repo_tags, ["registry.berth.test/library/mirrored:v1"]);
    let direct = format!("{ADDRESS}/library/mirrored:v1");
    let refused = in_netns(&registry.netns, || runtime().block_on(service.pull(&direct, None, None)));
    assert!(matches!(refused, Err(ImageError::Registry { .. })), "HTTPS to a plain-HTTP registry fails: {refused:?}");
}
