//! Images made and moved without a registry pull: committing a container's writable
//! layer (whiteouts and opaque directories made by the real overlayfs come back as OCI
//! whiteouts), importing a root filesystem tarball, exporting to a `docker save` / OCI
//! layout archive and importing it again, and refusing an archive whose blob was
//! tampered with, leaving nothing behind.
use std::io::{Cursor, Read};
use std::path::Path;

use berth::image::{ImageConfig, ImageError, ImageService};
use berth_integration::images::{assert_empty, local_config, open_service, Compression, Layer, LayerBuilder, Mounted, TestImage};
use berth_integration::registry::{in_netns, runtime, Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

fn base_image() -> TestImage {
    let layer = LayerBuilder::new().busybox().dir("data", 0o755).file("data/old", b"old", 0o644);
    TestImage::new(vec![Layer::new(&layer.tar(), Compression::Gzip)])
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Mounts a new container of `image` and checks what the committed changes look like.
fn check_committed(service: &ImageService, image: &str, key: &str, at: &Path) {
    let mounts = service.prepare_active(key, image).expect("prepare");
    {
        let mounted = Mounted::new(&mounts, at);
        assert!(!mounted.target.join("etc/passwd").exists(), "the deletion was committed");
        assert_eq!(std::fs::read(mounted.target.join("new/file")).unwrap(), b"new");
        assert_eq!(names(&mounted.target.join("data")), ["fresh"], "the recreated directory is opaque");
        assert!(mounted.target.join("bin/busybox").is_file());
    }
    service.remove_active(key).unwrap();
}

fn pull_base(registry: &Registry, service: &ImageService) -> String {
    base_image().push(registry, "test/base", "v1");
    let reference = format!("{ADDRESS}/test/base:v1");
    in_netns(&registry.netns, || runtime().block_on(service.pull(&reference, None, None))).expect("pull");
    reference
}

#[test]
fn a_committed_container_layer_round_trips_through_an_archive() {
    let registry = Registry::start(Auth::None);
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let base = pull_base(&registry, &service);
    let mounts = service.prepare_active("c1", &base).unwrap();
    {
        let mounted = Mounted::new(&mounts, &dir.path().join("rootfs"));
        std::fs::remove_file(mounted.target.join("etc/passwd")).unwrap();
        std::fs::create_dir(mounted.target.join("new")).unwrap();
        std::fs::write(mounted.target.join("new/file"), b"new").unwrap();
        std::fs::remove_dir_all(mounted.target.join("data")).unwrap();
        std::fs::create_dir(mounted.target.join("data")).unwrap();
        std::fs::write(mounted.target.join("data/fresh"), b"f").unwrap();
    }
    let config = ImageConfig { cmd: Some(vec!["/bin/sh".into(), "-c".into(), "true".into()]), ..ImageConfig::default() };
    let committed = runtime().block_on(service.commit_active("c1", &base, Some(config), "test commit", Some("berth.test/committed:v1"))).expect("commit");
    service.remove_active("c1").unwrap();
    assert_eq!(committed.layers.len(), 2);
    assert_eq!(committed.history.last().and_then(|h| h.created_by.as_deref()), Some("test commit"));
    assert_eq!(committed.config.cmd.as_ref().unwrap()[2], "true");
    check_committed(&service, "berth.test/committed:v1", "c2", &dir.path().join("rootfs"));

    let archive = dir.path().join("archive.tar");
    service.export(&["berth.test/committed:v1"], std::fs::File::create(&archive).unwrap()).expect("export");
    service.remove(&base).unwrap();
    service.remove("berth.test/committed:v1").unwrap();
    assert_empty(&service);
    let imported = runtime().block_on(service.import(std::fs::File::open(&archive).unwrap())).expect("import");
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].id, committed.id, "the image ID survives the round trip");
    assert_eq!(imported[0].repo_tags, ["berth.test/committed:v1"]);
    check_committed(&service, "berth.test/committed:v1", "c3", &dir.path().join("rootfs"));
    let listing = tar_names(&archive);
    for required in ["manifest.json", "index.json", "oci-layout"] {
        assert!(listing.iter().any(|name| name == required), "{required} in {listing:?}");
    }
}

fn tar_names(path: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn an_archive_with_a_tampered_blob_is_refused_and_leaves_nothing() {
    let registry = Registry::start(Auth::None);
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let base = pull_base(&registry, &service);
    let layer_digest = service.get(&base).unwrap().layers[0].digest.clone();
    let mut archive = Vec::new();
    service.export(&[&base], &mut archive).unwrap();
    service.remove(&base).unwrap();
    assert_empty(&service);

    let mut tampered = tar::Builder::new(Vec::new());
    let mut reader = tar::Archive::new(Cursor::new(archive));
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let path = entry.path().unwrap().into_owned();
        if path.ends_with(&layer_digest[7..]) {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
        let mut header = entry.header().clone();
        tampered.append_data(&mut header, &path, bytes.as_slice()).unwrap();
    }
    let tampered = tampered.into_inner().unwrap();
    let error = runtime().block_on(service.import(Cursor::new(tampered))).expect_err("tampered archive");
    match error {
        ImageError::DigestMismatch { expected, .. } => assert_eq!(expected, layer_digest),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_empty(&service);
}

#[test]
fn a_rootfs_tarball_imports_as_a_one_layer_image() {
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let tarball = Layer::new(&LayerBuilder::new().busybox().tar(), Compression::Gzip).blob;
    let config = ImageConfig { cmd: Some(vec!["/bin/sh".into()]), ..ImageConfig::default() };
    let image = runtime().block_on(service.import_rootfs(Cursor::new(tarball), config, Some("berth.test/rootfs:v1"))).expect("import");
    assert_eq!((image.layers.len(), image.repo_tags.clone()), (1, vec!["berth.test/rootfs:v1".to_string()]));
    assert_eq!(image.config.cmd, Some(vec!["/bin/sh".to_string()]));
    let mounts = service.prepare_active("c", "berth.test/rootfs:v1").unwrap();
    {
        let mounted = Mounted::new(&mounts, &dir.path().join("rootfs"));
        assert!(mounted.target.join("bin/busybox").is_file());
    }
    service.remove_active("c").unwrap();
    service.remove("berth.test/rootfs:v1").unwrap();
    assert_empty(&service);
    let hostile = LayerBuilder::new().file("../../escape", b"x", 0o644).tar();
    let refused = runtime().block_on(service.import_rootfs(Cursor::new(hostile), ImageConfig::default(), None));
    assert!(matches!(refused, Err(ImageError::HostileLayer { .. })), "{refused:?}");
    assert_empty(&service);
}
