//! Bad input from registries and images: hostile layers, digests and sizes that do not
//! match, a truncated gzip stream, unknown media types, an oversized manifest, a
//! registry that answers 500 or hangs, missing images and invalid references. Each
//! gets its precise error, leaves no partial blob, snapshot or record behind, and does
//! not affect an image pulled before it.
use std::path::Path;
use std::time::{Duration, Instant};

use berth::image::{ImageError, ImageService};
use berth_integration::fake_registry::{Behaviour, FakeRegistry};
use berth_integration::images::{assert_empty, local_config, open_service, Compression, Layer, LayerBuilder, Mounted, TestImage};
use berth_integration::registry::{in_netns, runtime, Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

fn pull(registry: &Registry, service: &ImageService, reference: &str) -> Result<berth::image::Image, ImageError> {
    in_netns(&registry.netns, || runtime().block_on(service.pull(reference, None, None)))
}

/// The base layer every image here shares, so that a failed pull could damage it.
fn base_layer() -> Layer {
    Layer::gzip(LayerBuilder::new().busybox())
}

/// Pulls a good image sharing the base layer; returns its reference.
fn good_image(registry: &Registry, service: &ImageService) -> String {
    TestImage::new(vec![base_layer()]).push(registry, "test/good", "v1");
    let reference = format!("{ADDRESS}/test/good:v1");
    pull(registry, service, &reference).expect("the good image pulls");
    reference
}

/// Checks the good image is intact, then removes it and checks the store is empty.
fn good_image_intact_and_nothing_else(service: &ImageService, good: &str, dir: &Path) {
    assert_eq!(service.list().unwrap().len(), 1, "only the good image is recorded");
    assert_eq!(service.snapshots().list().unwrap().len(), 1, "only the good image's layer is unpacked");
    assert_eq!(service.content().list().unwrap().len(), 3, "only the good image's blobs are stored");
    let mounts = service.prepare_active("check", good).unwrap();
    {
        let mounted = Mounted::new(&mounts, &dir.join("rootfs"));
        assert!(mounted.target.join("bin/busybox").is_file());
    }
    service.remove_active("check").unwrap();
    service.remove(good).unwrap();
    assert_empty(service);
}

/// Pushes `image`, pulls it expecting an error, and checks that nothing was left.
fn expect_failure(image: TestImage, edit: impl FnOnce(&mut serde_json::Value), check: impl FnOnce(&ImageError)) {
    let registry = Registry::start(Auth::None);
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let good = good_image(&registry, &service);
    image.push_with(&registry, "test/bad", "v1", edit);
    let error = pull(&registry, &service, &format!("{ADDRESS}/test/bad:v1")).expect_err("the bad image must not pull");
    check(&error);
    good_image_intact_and_nothing_else(&service, &good, dir.path());
}

fn hostile(entries: LayerBuilder, reason: &str) {
    let escape = std::env::temp_dir().join(format!("berth-test-escape-{}", std::process::id()));
    let image = TestImage::new(vec![base_layer(), Layer::gzip(entries)]);
    expect_failure(image, |_| {}, |error| match error {
        ImageError::HostileLayer { reason: why, .. } => assert_eq!(why, reason, "{error}"),
        other => panic!("expected a hostile layer error, got {other:?}"),
    });
    assert!(!escape.exists(), "something was written outside the snapshot");
}

const ESCAPE: &str = "../../../../../../../../../tmp/berth-test-escape";

#[test]
fn a_layer_with_dot_dot_entries_is_refused() {
    let name = format!("{ESCAPE}-{}", std::process::id());
    hostile(LayerBuilder::new().file(&name, b"x", 0o644), "path contains `..`");
}

#[test]
fn a_layer_with_absolute_paths_is_refused() {
    let name = format!("/tmp/berth-test-escape-{}", std::process::id());
    hostile(LayerBuilder::new().file(&name, b"x", 0o644), "absolute path");
}

#[test]
fn a_layer_writing_through_a_symlink_is_refused() {
    let name = format!("berth-test-escape-{}", std::process::id());
    let layer = LayerBuilder::new().symlink("tmp", "/tmp").file(&format!("tmp/{name}"), b"x", 0o644);
    hostile(layer, "a parent is a symlink or not a directory");
}

#[test]
fn a_symlink_leading_out_of_the_layer_is_refused() {
    hostile(LayerBuilder::new().dir("a", 0o755).symlink("a/out", "../../etc"), "symlink leads out of the layer");
}

#[test]
fn a_hard_link_leading_out_of_the_layer_is_refused() {
    hostile(LayerBuilder::new().hardlink("passwd", "../../../../etc/passwd"), "hard link leads out of the layer");
}

#[test]
fn a_blob_whose_content_does_not_match_its_digest_is_refused() {
    let registry = Registry::start(Auth::None);
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let good = good_image(&registry, &service);
    let layer = Layer::gzip(LayerBuilder::new().file("data", &[7u8; 100_000], 0o644));
    TestImage::new(vec![base_layer(), layer.clone()]).push(&registry, "test/bad", "v1");
    let stored = registry.blob_data_path(&layer.digest);
    let mut bytes = std::fs::read(&stored).expect("the registry's copy of the blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let error = pull(&registry, &service, &format!("{ADDRESS}/test/bad:v1")).expect_err("corrupt blob");
    assert!(matches!(error, ImageError::DigestMismatch { .. }), "{error:?}");
    good_image_intact_and_nothing_else(&service, &good, dir.path());
}

#[test]
fn a_layer_whose_size_does_not_match_the_manifest_is_refused() {
    let image = TestImage::new(vec![base_layer(), Layer::gzip(LayerBuilder::new().file("f", b"hello", 0o644))]);
    let actual = image.layers[1].blob.len() as u64;
    expect_failure(image, |manifest| manifest["layers"][1]["size"] = (actual + 10).into(), |error| match error {
        ImageError::SizeMismatch { expected, actual: got, .. } => assert_eq!((*expected, *got), (actual + 10, actual)),
        other => panic!("expected a size mismatch, got {other:?}"),
    });
}

#[test]
fn a_layer_whose_diff_id_does_not_match_the_config_is_refused() {
    let mut image = TestImage::new(vec![base_layer(), Layer::gzip(LayerBuilder::new().file("f", b"hello", 0o644))]);
    let wrong = berth_integration::images::sha256(b"something else");
    image.config["rootfs"]["diff_ids"][1] = wrong.clone().into();
    expect_failure(image, |_| {}, |error| match error {
        ImageError::DigestMismatch { what, expected, .. } => {
            assert!(what.contains("diff ID"), "{what}");
            assert_eq!(expected, &wrong);
        }
        other => panic!("expected a diff ID mismatch, got {other:?}"),
    });
}

#[test]
fn a_truncated_gzip_stream_is_refused() {
    let tar = LayerBuilder::new().file("big", &vec![3u8; 300_000], 0o644).file("after", b"a", 0o644).tar();
    let full = Layer::new(&tar, Compression::Gzip);
    let cut = full.blob[..full.blob.len() - 40].to_vec();
    let truncated = Layer { digest: berth_integration::images::sha256(&cut), blob: cut, ..full };
    expect_failure(TestImage::new(vec![base_layer(), truncated]), |_| {}, |error| {
        assert!(matches!(error, ImageError::CorruptLayer { .. }), "{error:?}");
    });
}

#[test]
fn an_unknown_layer_media_type_is_refused_before_downloading() {
    let image = TestImage::new(vec![base_layer(), Layer::gzip(LayerBuilder::new().file("f", b"x", 0o644))]);
    expect_failure(image, |manifest| manifest["layers"][1]["mediaType"] = "application/vnd.example.mystery".into(), |error| {
        assert!(matches!(error, ImageError::UnsupportedMediaType(t) if t == "application/vnd.example.mystery"), "{error:?}");
    });
}

/// A registry stand-in on port 5002 with `behaviour`, and the pull's error.
fn pull_from_fake(behaviour: Behaviour) -> (ImageError, Duration) {
    let netns = berth_integration::netns::NetNs::new();
    berth_integration::command::sh(&format!("nsenter --net={} ip link set lo up", netns.path())).ok();
    let _fake = FakeRegistry::start(&netns, 5002, behaviour);
    let dir = TempDir::new("images");
    let config = berth::image::RegistryConfig::from_toml(
        "[pull]\nread_timeout_seconds = 2\nconnect_timeout_seconds = 2\n[registry.\"127.0.0.1:5002\"]\ninsecure = true\n",
    )
    .unwrap();
    let service = open_service(dir.path(), config);
    let started = Instant::now();
    let error = in_netns(&netns, || runtime().block_on(service.pull("127.0.0.1:5002/test/fake:v1", None, None))).expect_err("fake registry");
    let took = started.elapsed();
    assert_empty(&service);
    (error, took)
}

#[test]
fn a_manifest_over_four_mebibytes_is_refused() {
    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
    huge.extend(br#""}}"#);
    let (error, _) = pull_from_fake(Behaviour::Manifest(huge));
    assert!(matches!(error, ImageError::ManifestTooLarge { limit: 4194304, .. }), "{error:?}");
}

#[test]
fn a_registry_answering_500_is_reported() {
    let (error, _) = pull_from_fake(Behaviour::Status(500));
    match error {
        ImageError::Registry { endpoint, message } => {
            assert_eq!(endpoint, "127.0.0.1:5002");
            assert!(message.contains("500"), "{message}");
        }
        other => panic!("expected a registry error, got {other:?}"),
    }
}

#[test]
fn a_registry_that_hangs_times_out() {
    let (error, took) = pull_from_fake(Behaviour::Hang);
    assert!(matches!(error, ImageError::Timeout { .. }), "{error:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn missing_images_and_invalid_references_are_told_apart() {
    let registry = Registry::start(Auth::None);
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let missing = pull(&registry, &service, &format!("{ADDRESS}/test/none:v1")).expect_err("missing");
    assert!(matches!(missing, ImageError::NotFound(_)), "{missing:?}");
    let invalid = pull(&registry, &service, "Not/A:Valid:Reference").expect_err("invalid");
    assert!(matches!(invalid, ImageError::InvalidReference { .. }), "{invalid:?}");
    assert!(matches!(service.get("busybox"), Err(ImageError::NotFound(_))));
    assert_empty(&service);
}
